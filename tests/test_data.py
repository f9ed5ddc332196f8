"Tests of muomni.data: bad input, split disjointness, caching and determinism."
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from conftest import link_corpora
from muomni import data as D


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    "A fresh data folder that reuses the project's unpacked text corpora (no second download)."
    return link_corpora(tmp_path_factory.mktemp("data"))


# --- bad input -----------------------------------------------------------------------------------------------

def test_manifest_missing_column_names_file(tmp_path):
    (tmp_path / "m.csv").write_text("path,words\na.wav,hi\n")
    with pytest.raises(D.DataError, match=r"m\.csv.*missing column"): D.read_manifest(tmp_path / "m.csv")


def test_manifest_non_utf8_names_file_and_row(tmp_path):
    (tmp_path / "m.csv").write_bytes(b"path,text\na.wav,ok\nb.wav,caf\xe9\n")
    with pytest.raises(D.DataError, match=r"m\.csv: line 3"): D.read_manifest(tmp_path / "m.csv")


def test_manifest_extra_field_names_row(tmp_path):
    (tmp_path / "m.csv").write_text("path,text\na.wav,ok,surplus\n")
    with pytest.raises(D.DataError, match="row 2"): D.read_manifest(tmp_path / "m.csv", check_files=False)


def test_manifest_skips_empty_text_and_missing_audio_with_summary(tmp_path, capsys):
    D.save_audio(tmp_path / "a.wav", torch.zeros(160))
    D.save_audio(tmp_path / "b.wav", torch.zeros(160))
    (tmp_path / "m.csv").write_text("path,text\na.wav,fine\nb.wav,  \nnone.wav,gone\n")
    rows = D.read_manifest(tmp_path / "m.csv")
    assert [Path(r["path"]).name for r in rows] == ["a.wav"]
    out = capsys.readouterr().out
    assert "m.csv" in out and "1 with empty text (rows 3)" in out and "1 whose audio file is missing (rows 4)" in out


def test_load_audio_bad_files(tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF....WAVEnonsense")
    (tmp_path / "empty.wav").write_bytes(b"")
    for name in ("corrupt.wav", "empty.wav", "missing.flac"):
        with pytest.raises(D.DataError, match=name.replace(".", r"\.")): D.load_audio(tmp_path / name)


def test_load_audio_any_rate_and_channels(tmp_path):
    stereo = np.random.default_rng(0).uniform(-0.5, 0.5, size=(8000, 3)).astype(np.float32)
    sf.write(tmp_path / "x.wav", stereo, 8000)
    wave = D.load_audio(tmp_path / "x.wav")
    assert wave.ndim == 1 and wave.dtype == torch.float32 and abs(len(wave) - 16000) <= 1


def test_truncated_image_names_file(tmp_path):
    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "ok.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:-30])
    with pytest.raises(D.DataError, match=r"cut\.png"): D.load_image(tmp_path / "cut.png")


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F"])
def test_to_rgb_any_mode(mode):
    img = Image.new("RGB", (8, 8), (10, 200, 30))
    img = img.convert(mode) if mode not in ("I;16", "I", "F") else Image.fromarray(
        np.arange(64).reshape(8, 8).astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]))
    out = D.to_rgb(img)
    assert out.mode == "RGB" and out.size == (8, 8)


def test_unknown_voice_is_refused():
    with pytest.raises(ValueError, match="en-gb"): D.synthesize("hello", voice="en-gb")
    with pytest.raises(ValueError, match="nosuch"): D.synthesize("hello", voice="en-us+nosuch")
    with pytest.raises(ValueError): D.synthesize("   ")


def test_text_source_non_utf8_and_missing(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\n")
    with pytest.raises(D.DataError, match=r"bad\.txt: line 2"): D.text_documents(tmp_path)
    with pytest.raises(ValueError, match="neither"): D.text_documents(tmp_path / "nope")


def test_real_format_loaders(tmp_path, capsys):
    chapter = tmp_path / "libri" / "19" / "198"
    D.save_audio(chapter / "19-198-0000.flac", torch.zeros(400))
    (chapter / "19-198.trans.txt").write_text("19-198-0000 NORTHANGER ABBEY\n19-198-0001 MISSING AUDIO\n")
    rows = D.librispeech_manifest(tmp_path / "libri")
    assert [(r["text"], r["speaker"]) for r in rows] == [("northanger abbey", "19")]
    assert "1 whose audio file is missing" in capsys.readouterr().out
    (tmp_path / "lj").mkdir()
    (tmp_path / "lj" / "metadata.csv").write_text("LJ1\n")
    with pytest.raises(D.DataError, match="row 1"): D.ljspeech_manifest(tmp_path / "lj")
    (tmp_path / "c.json").write_text(json.dumps({"images": []}))
    with pytest.raises(D.DataError, match=r"c\.json"): D.coco_captions(tmp_path / "c.json", tmp_path)


def test_shape_spec_validation():
    with pytest.raises(ValueError): D.ShapeSpec("blob", "red")
    with pytest.raises(ValueError): D.ShapeSpec("star", "red", count=2, position="left")


# --- splits ----------------------------------------------------------------------------------------------------

def test_text_splits_by_play_variants_merged(data_dir):
    docs = D.shakespeare_documents(data_dir)
    assert "twelfth_night" in docs and "twelfe-night" not in docs and "midsummer_nights_dreame" not in docs
    names = D.text_split_names(data_dir=data_dir)
    assert names["val"] and not set(names["train"]) & set(names["val"])
    assert set(names["train"]) | set(names["val"]) == set(docs)
    splits = D.text_splits(data_dir=data_dir)
    assert len(splits["val"]) == len(names["val"]) and not set(splits["train"]) & set(splits["val"])


def test_registry_is_written_once_and_read_back(data_dir):
    reg = D.split_registry(data_dir)
    path = data_dir / "splits.json"
    assert path.exists() and D.split_registry(data_dir) is reg
    mtime = path.stat().st_mtime_ns
    D._registries.clear()
    assert D.split_registry(data_dir)["digest"] == reg["digest"] and path.stat().st_mtime_ns == mtime   # read, not rebuilt
    texts = D.registry_texts(data_dir)
    assert len(texts["test"]) == len(reg["text"]["test"]) and not set(reg["text"]["train"]) & set(reg["text"]["test"])


def test_registry_sentences_disjoint_across_splits(data_dir):
    keys = {s: {D.normalize_transcript(r["text"]) for r in D.registry_sentences(s, data_dir)} for s in ("train", "tune", "test")}
    assert keys["tune"] and keys["test"]
    assert not keys["train"] & keys["tune"] and not keys["train"] & keys["test"] and not keys["tune"] & keys["test"]


def test_registry_holds_out_caption_contents_not_wordings(data_dir):
    train = {D.normalize_transcript(r["text"]) for r in D.registry_sentences("train", data_dir, sources=("domain",))}
    test = {D.normalize_transcript(r["text"]) for r in D.registry_sentences("test", data_dir, sources=("domain",))}
    for spec in D.all_shape_specs():
        wordings = {D.normalize_transcript(D.shape_caption(spec, t)) for t in range(4)}
        assert not (wordings & train and wordings & test), f"{D.content_key(spec)} has captions on both sides"


def test_registry_voices_hold_out_families_and_an_accent(data_dir):
    v = D.split_registry(data_dir)["voices"]
    family = lambda voice: D.voice_family(voice.partition("+")[2]) if "+" in voice else ""
    for a, b in [("train", "tune"), ("train", "test"), ("tune", "test"), ("train", "test_accent"), ("tune", "test_accent")]:
        assert not set(v[a]) & set(v[b]), (a, b)
    assert not {family(x) for x in v["train"]} & {family(x) for x in v["test"] + v["tune"]} - {""}
    assert not {x.partition("+")[0] for x in v["train"] + v["tune"] + v["test"]} & set(v["test_accents"])
    used = {x.partition("+")[2] for split in ("train", "tune", "test", "test_accent") for x in v[split]}
    assert not used & set(D.EVAL_RESERVED_VARIANTS) and not used & set(D.NON_SPEECH_VARIANTS)


def test_changed_registry_changes_the_speech_set_folder(data_dir, tmp_path):
    before = D.speech_set_dir("smoke", data_dir)
    reg = json.loads((data_dir / "splits.json").read_text())
    reg["params"]["seed"] = 99                               # a registry made by other parameters is rebuilt
    (data_dir / "splits.json").write_text(json.dumps(reg))
    D._registries.clear()
    assert D.speech_set_dir("smoke", data_dir) == before     # rebuilt to the same content: same digest, same folder
    assert D.speech_set_dir("smoke", data_dir, seed=1) != before


def test_speech_splits_disjoint_voices_and_sentences(data_dir):
    csvs = D.speech_splits("smoke", data_dir, progress=False)
    assert set(csvs) == set(D.SPEECH_SPLITS)
    rows = {split: D.read_manifest(csv) for split, csv in csvs.items()}
    for split in D.SPEECH_SPLITS: assert len(rows[split]) == D.SPEECH_PRESETS["smoke"][f"n_{split}"]
    for a, b in [("train", "tune"), ("train", "test"), ("train", "test_accent"), ("tune", "test"), ("tune", "test_accent")]:
        assert not {r["voice"] for r in rows[a]} & {r["voice"] for r in rows[b]}, (a, b)
        assert not {r["text"] for r in rows[a]} & {r["text"] for r in rows[b]}, (a, b)
    assert all(r["source"] in D.SENTENCE_SOURCES for split in rows for r in rows[split])
    assert all(set(r["text"]) <= set(D.CHARSET) for split in rows for r in rows[split])


def test_shapes_heldout_combos_and_seeds():
    sp = D.shapes_splits(60, 30, image_size=32, n_tune=10)
    combos = lambda items: {(d["colour"], d["shape"]) for d in items}
    for split in ("train", "tune", "test"): assert not combos(sp[split]) & set(D.HELDOUT_COMBOS)
    assert combos(sp["test_combo"]) <= set(D.HELDOUT_COMBOS)
    pixels = {k: {np.asarray(d["image"]).tobytes() for d in v} for k, v in sp.items()}
    assert not pixels["train"] & pixels["test"] and not pixels["train"] & pixels["tune"] and not pixels["tune"] & pixels["test"]


def test_digits_split_is_a_partition(data_dir):
    parts = {s: D.split_registry(data_dir)["digits"][s] for s in ("train", "tune", "test")}
    assert sum(map(len, parts.values())) == len(set().union(*map(set, parts.values()))) == 1797
    test = D.digits_dataset(16, "test", data_dir)
    assert {d["label"] for d in test} == set(range(10)) and len(test) == len(parts["test"])


# --- caching and determinism ------------------------------------------------------------------------------------

SENTENCES = ["Where is the red star?", "Fair is foul, and foul is fair.", "A small blue circle on the left.",
             "Hover through the fog and filthy air."]


def written(folder: Path) -> dict:
    "Every file under `folder` with its modification time: what a second build must leave alone."
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_build_speech_set_cache_and_rebuild(tmp_path, monkeypatch):
    out = tmp_path / "set"
    csv_path = D.build_speech_set(SENTENCES, ["en-us", "en+f2"], out, seed=3, progress=False)
    before = written(out)
    assert csv_path in before and out / "build.json" in before and len([p for p in before if p.suffix == ".flac"]) == 4
    with monkeypatch.context() as m:                     # a cached build synthesises nothing and rewrites nothing
        m.setattr(D, "_run_chunks", lambda *a, **k: pytest.fail("a cached build synthesised again"))
        assert D.build_speech_set(SENTENCES, ["en-us", "en+f2"], out, seed=3, progress=False) == csv_path
    assert written(out) == before
    D.build_speech_set(SENTENCES, ["en-us", "en+f2"], out, seed=3, rates=(150, 160), progress=False)
    after = written(out)
    assert after.keys() == before.keys() and all(after[p] != before[p] for p in before)   # a changed parameter: all rewritten
    record = json.loads((out / "build.json").read_text())
    assert record["params"]["rates"] == [150, 160]
    assert all(150 <= r["rate"] <= 160 for r in D.read_manifest(csv_path))


def test_build_speech_set_same_audio_serial_and_parallel(tmp_path):
    kw = dict(voices=["en-us+f2", "en+m3"], seed=1, chunk_size=2, progress=False)
    a = D.read_manifest(D.build_speech_set(SENTENCES, out_dir=tmp_path / "a", workers=1, **kw))
    b = D.read_manifest(D.build_speech_set(SENTENCES, out_dir=tmp_path / "b", workers=2, **kw))
    assert [r["voice"] for r in a] == [r["voice"] for r in b]
    assert all(torch.equal(D.load_audio(x["path"]), D.load_audio(y["path"])) for x, y in zip(a, b))


def test_cached_build_rejects_partial(tmp_path):
    assert D.cached_build(tmp_path, {"a": 1}) is None
    D.finish_build(tmp_path, {"a": 1})
    assert D.cached_build(tmp_path, {"a": 1}) is not None and D.cached_build(tmp_path, {"a": 2}) is None


# --- features ---------------------------------------------------------------------------------------------------

def test_log_mel_shape_and_roundtrip():
    wave, sr = D.synthesize("Where is the red star?", "en-us")
    mel = D.log_mel(wave)
    assert mel.shape == (D.N_MELS, len(wave) // D.HOP_LENGTH + 1)
    back = D.mel_to_wave(mel)
    other = D.log_mel(D.synthesize("Something else entirely, said slowly.", "en+m3", rate=120)[0])
    assert D.mel_distance(D.log_mel(back), mel) < 0.5 * D.mel_distance(other, mel)
    _, std = D.mel_stats([mel])
    assert torch.isfinite(1 / std).all()


def test_synthesize_events_align_with_words():
    wave, sr, events = D.synthesize("Hover through the fog.", events=True)
    assert [w.name for w in events["words"]] == ["Hover", "through", "the", "fog"]
    assert all(0 <= p.sample <= len(wave) for p in events["phonemes"])


def test_synthesize_is_safe_from_threads():
    from concurrent.futures import ThreadPoolExecutor
    texts = [f"Line number {w} of the test." for w in ("one", "two", "three", "four", "five", "six")]
    with ThreadPoolExecutor(3) as pool:
        waves = list(pool.map(lambda t: D.synthesize(t, "en-us+f3")[0], texts))
    serial = [D.synthesize(t, "en-us+f3")[0] for t in texts]
    assert all(abs(len(a) - len(b)) < 200 and a.abs().max() > 0.05 for a, b in zip(waves, serial))


def test_alignments_roundtrip(tmp_path):
    csv_path = D.build_speech_set(SENTENCES[:2], ["en-us"], tmp_path / "al", alignments=True, progress=False)
    rows, aligned = D.read_manifest(csv_path), D.read_alignments(csv_path)
    words = aligned[rows[1]["path"]]["words"]
    assert [w.name for w in words] == ["Fair", "is", "foul", "and", "foul", "is", "fair"]
    assert words[-1].sample < rows[1]["duration"] * D.SAMPLE_RATE

def test_in_chunks_workers_inherit_make_and_run_one_thread():
    "Forked workers get `make` without pickling it (a lock cannot be pickled) and run one torch thread; results come back in order."
    import threading, torch
    lock, before = threading.Lock(), torch.get_num_threads()
    make = lambda a, b: [(i, torch.get_num_threads(), lock is not None) for i in range(a, b)]
    out = D.in_chunks(make, 7, workers=2, chunk=2)
    assert [i for i, _, _ in out] == list(range(7)) and all(t == 1 and ok for _, t, ok in out)
    assert D.in_chunks(make, 2, workers=2, chunk=5) == [(0, before, True), (1, before, True)]   # one chunk: here, own threads
    assert torch.get_num_threads() == before and not D._chunk_jobs
