"Stage D: codec and Talker unit tests (fast; the notebook's smoke run covers training end to end)."
import json, shutil

import pytest
import torch

from muomni.core import CheckpointError, load_config, save_checkpoint
from muomni import talker as T


def tiny_talker(n_phones: int = 20):
    cfg = load_config("talker_tiny")
    return cfg, T.Talker(cfg, [T.PAD, T.SIL, T.UNK] + [f"p{i}" for i in range(n_phones)]).eval()


def test_core_matches_book():
    cfg, m = tiny_talker()
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff, cfg.codebooks, cfg.codebook_size) == (192, 4, 3, 768, 2, 128)
    assert abs(m.core_parameters() / 2.24e6 - 1) < 0.01
    assert m.core_parameters() + sum(p.numel() for p in m.cond.parameters()) == sum(p.numel() for p in m.parameters())


def test_presets_load():
    for preset in ("smoke", "laptop"):
        cfg = load_config("talker_tiny", preset=preset)
        assert cfg.save_dir.startswith("checkpoints/talker_") and T.codec_config(cfg).save_dir.startswith("checkpoints/rvq_")


def test_unknown_config_key():
    with pytest.raises(ValueError, match="no_such_key"):
        load_config("talker_tiny", no_such_key=1)


def test_kv_cache_matches_teacher_forcing():
    torch.manual_seed(0)
    cfg, m = tiny_talker()
    phones, frame_phone, voice = torch.randint(3, 23, (2, 7)), torch.randint(0, 7, (2, 40)), torch.tensor([1, 2])
    cond = m.cond.frames(m.cond.encode(phones, voice)[0], frame_phone, voice)
    codes = m.generate(cond)
    assert codes.shape == (2, 5, 2)
    logits, log_dur = m(phones, frame_phone, codes, voice)
    assert torch.equal(torch.stack([lg.argmax(-1) for lg in logits], -1), codes)
    assert log_dur.shape == (2, 7)


def test_too_many_frames():
    cfg, m = tiny_talker()
    with pytest.raises(ValueError, match="max_frames"):
        m.generate(torch.zeros(1, cfg.max_frames + 1, cfg.d_model))


def test_unknown_phonemes_map_to_unk():
    _, m = tiny_talker()
    assert m.phone_tensor(["p0", "nope"]).tolist() == [3, m.phone_ids[T.UNK]]


def test_codec_shapes_and_bad_input():
    codec = T.RVQCodec(T.CodecConfig(hidden=32, latent_dim=8, codebook_size=16))
    mel = torch.randn(1, 24, 128)
    codes = codec.encode(mel)
    assert codes.shape == (1, 3, 2) and codes.max() < 16
    assert codec.decode(codes).shape == (1, 24, 128)
    with pytest.raises(ValueError, match="multiple of 8"):
        codec.encode(torch.randn(1, 25, 128))


def test_rvq_trains_codebooks_and_restarts_dead_codes():
    torch.manual_seed(0)
    vq = T.ResidualVQ(2, 32, 4, restart_every=2, dead_usage=0.5)
    vq.train()
    z = torch.randn(256, 4, requires_grad=True)
    zq, codes, loss = vq(z)                      # first call: codebooks start from data
    loss.backward()
    assert vq.codebooks.grad is not None and vq.codebooks.grad.abs().sum() > 0     # the codebook loss moves the codes
    assert z.grad is not None and z.grad.abs().sum() > 0                             # the commitment loss moves the encoder
    vq.usage[0, :8] = 0.0                        # pretend 8 codes have not been used for a long time
    vq(z.detach()); vq(z.detach())               # the restart happens on a restart_every call
    assert vq.restarts >= 8


def test_codebook_stats():
    s = T.codebook_stats(torch.tensor([[0, 0], [1, 0], [2, 0], [3, 0]]), 4)
    assert s["codebook_usage"] == pytest.approx(5 / 8)
    assert s["perplexity"] == [pytest.approx(4.0), pytest.approx(1.0)]


def test_phoneme_timeline_covers_every_frame():
    ev = dict(phonemes=[T.data.SpeechEvent("phoneme", 0, 0, ms, 0, p) for ms, p in ((12, "h"), (60, "@"), (61, "l"), (400, "_"))])
    phones, durs = T.phoneme_timeline(ev, 32)
    assert phones == [T.SIL, "h", "@", "l", "_"] and sum(durs) == 32 and min(durs) >= 0
    assert T.frame_index(torch.tensor(durs), 32).tolist()[:2] == [0, 1]


def test_collate_pads():
    items = [dict(phones=torch.tensor([1, 4, 5]), durs=torch.tensor([2, 3, 3]), frame_phone=torch.zeros(8, dtype=torch.long),
                  codes=torch.zeros(1, 2, dtype=torch.long)),
             dict(phones=torch.tensor([1, 4]), durs=torch.tensor([8, 8]), frame_phone=torch.zeros(16, dtype=torch.long),
                  codes=torch.ones(2, 2, dtype=torch.long))]
    b = T.collate_talker(items)
    assert b["codes"].shape == (2, 2, 2) and b["frame_phone"].shape == (2, 16)
    assert b["code_mask"].tolist() == [[True, False], [True, True]] and b["phone_mask"].sum() == 5


def test_error_rates():
    r = T.error_rates(["the red circle"], ["the red circle"])
    assert r == dict(cer=0.0, wer=0.0)
    assert T.error_rates(["a b"], ["a c"])["wer"] == pytest.approx(0.5)


def test_speak_rejects_empty_text():
    _, m = tiny_talker()
    T.attach_codec(m, T.RVQCodec(T.CodecConfig(hidden=32, latent_dim=8)))
    with pytest.raises(ValueError, match="nothing to speak"):
        T.speak("   ", m)


def test_speak_untrained_has_a_wave():
    _, m = tiny_talker()
    T.attach_codec(m, T.RVQCodec(T.CodecConfig(hidden=32, latent_dim=8)))
    wave, sr = T.speak("Hello there.", m)
    assert sr == 16000 and wave.ndim == 1 and (len(wave) + 160) % 1280 == 0 and len(wave) > 0   # Griffin-Lim returns hop * (frames - 1) samples


def test_load_talker_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        T.load_talker(tmp_path / "nothing_here")


def test_load_codec_shape_mismatch(tmp_path):
    small = T.RVQCodec(T.CodecConfig(hidden=32, latent_dim=8))
    save_checkpoint(tmp_path / "final.pt", small, T.CodecConfig(hidden=64, latent_dim=8))
    with pytest.raises(CheckpointError):
        T.load_codec(tmp_path)


def test_load_talker_roundtrip(tmp_path):
    cfg, m = tiny_talker()
    codec_dir = tmp_path / "rvq"
    ccfg = T.CodecConfig(hidden=32, latent_dim=8, save_dir=str(codec_dir))
    save_checkpoint(codec_dir / "final.pt", T.RVQCodec(ccfg), ccfg)
    cfg.save_dir, cfg.codec_dir, cfg.vocoder_dir = str(tmp_path / "talker"), str(codec_dir), str(tmp_path / "no_vocoder")
    save_checkpoint(tmp_path / "talker" / "final.pt", m, cfg)
    T.save_talker_extras(cfg.save_dir, m)
    loaded = T.load_talker(tmp_path / "talker")
    assert loaded.phones == m.phones and isinstance(loaded.codec, T.RVQCodec)
    assert loaded.vocoder is None and T.vocoder_name(loaded) == "griffin-lim"        # no vocoder checkpoint: Griffin-Lim
    assert json.loads((tmp_path / "talker" / "phones.json").read_text())["phones"][:3] == [T.PAD, T.SIL, T.UNK]
    vcfg = T.VocoderConfig(channels=16, blocks=1)
    shutil.copytree(tmp_path / "talker", tmp_path / "copy")                        # a copy, as Stage E keeps one
    save_checkpoint(tmp_path / "no_vocoder" / "final.pt", T.Vocoder(vcfg), vcfg)   # the config's vocoder folder, now trained
    assert isinstance(T.load_talker(tmp_path / "talker").vocoder, T.Vocoder)
    assert T.load_talker(tmp_path / "copy").vocoder is None          # a copy without a vocoder folder spoke through Griffin-Lim
    save_checkpoint(tmp_path / "copy" / "vocoder" / "final.pt", T.Vocoder(vcfg), vcfg)    # a copied Talker's vocoder folder
    assert isinstance(T.load_talker(tmp_path / "copy").vocoder, T.Vocoder)


def test_bench_reports_what_it_measured(tmp_path):
    from conftest import check_bench, linear_weights
    cfg = load_config("talker_tiny", preset="smoke", save_dir=str(tmp_path / "none"), device="cpu")
    out = T.bench(cfg, repeats=1, train_steps=1, seconds=1.0)
    model = T.Talker(cfg, [T.PAD, T.SIL, T.UNK])
    frames = int(1.0 * cfg.frame_rate)
    check_bench(out, "train_utterances_per_s", cfg.batch_size, 6 * linear_weights(model.blocks) * cfg.batch_size * frames)
    assert out["trained"] is False and out["realtime_code_frames_per_s"] == cfg.frame_rate
    # seconds per second of speech; speak_s is rounded to 1 ms, so the ratio is known to 0.5 ms / audio_s
    assert out["rtf"] == pytest.approx(out["speak_s"] / out["audio_s"], rel=0.01, abs=0.0006 / out["audio_s"] + 1e-3)
    assert out["audio_s"] > 0 and out["code_frames_per_s"] > 0


def test_judge_is_this_presets_stage_b_only(tmp_path, capsys):
    from muomni import audio as A
    cfg = load_config("talker_tiny", preset="smoke", save_dir=str(tmp_path / "talker_smoke"))
    acfg = load_config("audio_enc_tiny", preset="smoke")
    save_checkpoint(tmp_path / "audio_encoder_laptop" / "final.pt", A.AudioEncoder(acfg), acfg)   # another preset's
    assert T.asr_judge(cfg) is None
    assert "no Stage B checkpoint in" in capsys.readouterr().out
    save_checkpoint(tmp_path / "audio_encoder_smoke" / "final.pt", A.AudioEncoder(acfg), acfg)
    name, transcribe = T.asr_judge(cfg)
    assert "audio_encoder_smoke" in name and f"Stage B's {tmp_path / 'audio_encoder_smoke' / 'final.pt'}" in capsys.readouterr().out
    assert isinstance(transcribe(torch.zeros(8000)), str)
    cfg.asr_dir = str(tmp_path / "audio_encoder_laptop")                                         # asked for by name
    assert "audio_encoder_laptop" in T.asr_judge(cfg)[0]
    cfg.asr_dir = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="missing"): T.asr_judge(cfg)


def untrained_speaker(voices=None):
    "An untrained Talker with a small codec and vocoder attached (enough to test shapes and streaming)."
    cfg = load_config("talker_tiny", **({"voices": voices, "voice": voices[0]} if voices else {}))
    m = T.Talker(cfg, [T.PAD, T.SIL, T.UNK] + sorted(set(T.espeak_phonemes("Hello there. How are you today?")))).eval()
    codec = T.RVQCodec(T.CodecConfig(hidden=32, latent_dim=8, n_voices=len(cfg.voices))).eval()
    return T.attach_vocoder(T.attach_codec(m, codec), T.Vocoder(T.VocoderConfig(channels=16, blocks=2)).eval())


def test_phonemes_without_synthesis(monkeypatch):
    def no_synthesis(*a, **k): raise AssertionError("espeak_phonemes must not synthesize")
    monkeypatch.setattr(T.data.Espeak, "synth", no_synthesis)
    monkeypatch.setattr(T.data, "synthesize", no_synthesis)
    phones = T.espeak_phonemes("Hello there, how are you?")
    assert phones[:4] == ["h", "@", "l", "'oU"] and phones.count("_:") == 2 and phones[-2:] == list(T.CLAUSE_END)
    assert T.text_phonemes("Hello there.", "en-gb-x-rp")[0] == T.SIL
    with pytest.raises(ValueError, match="nothing to speak"): T.espeak_phonemes("  ")


PHONEMES_AGAINST_EVENTS = """
from muomni import talker as T
text = "The blue square is above the red circle, I think."
_, _, events = T.data.synthesize(text, events=True)
names = [e.name for e in events["phonemes"]]
assert [p.lstrip("',") for p in T.espeak_phonemes(text)] == [p.lstrip("',") for p in names], names
u = T.utterance(text)
assert u["phones"] == T.text_phonemes(text) and u["phones_agree_unstressed"] and sum(u["durs"]) == len(u["mel"])
"""

def test_textphonemes_match_synthesis_events():
    # In a fresh process: after the split tests' thousands of syntheses in this one, espeak's phoneme events have been
    # seen to lose a sentence's first phoneme (espeak keeps state between calls); that is a different question.
    import os, subprocess, sys
    from pathlib import Path
    r = subprocess.run([sys.executable, "-c", PHONEMES_AGAINST_EVENTS], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(T.__file__).parents[1])})
    assert r.returncode == 0, r.stderr[-2000:]


def test_phoneme_timeline_matches_names_to_events():
    ev = dict(phonemes=[T.data.SpeechEvent("phoneme", 0, 0, ms, 0, p) for ms, p in ((10, "j"), (50, "'u:"), (90, "_:"), (100, "_"))])
    phones, durs = T.phoneme_timeline(ev, 12, ["j", "u:", "x", "_:", "_"])     # stress differs; "x" has no event
    assert phones == [T.SIL, "j", "u:", "x", "_:", "_"] and durs == [1, 4, 0, 4, 1, 2]


def test_vocoder_shapes_and_istft():
    voc = T.Vocoder(T.VocoderConfig(channels=16, blocks=2)).eval()
    assert voc(torch.randn(2, 24, 128)).shape == (2, 24 * 160)
    x = torch.randn(1, 40 * 160)
    spec = torch.stft(x, 400, 160, window=torch.hann_window(400), return_complex=True).transpose(1, 2)[:, :40]
    assert torch.allclose(voc.overlap_add(T.centre_phases(spec)), x, atol=1e-4)     # the head's inverse STFT is exact
    assert not torch.allclose(voc.overlap_add(spec), x, atol=1e-2)                 # its phases are measured from the centre
    start = T.Vocoder(T.VocoderConfig(channels=16, blocks=2, phase_origin="start"))
    assert torch.allclose(start.overlap_add(spec), x, atol=1e-4)


def test_vocoder_saved_before_phase_origin_loads_with_the_start_origin(tmp_path):
    voc = T.Vocoder(T.VocoderConfig(channels=16, blocks=2, phase_origin="start"))
    cfg = {k: v for k, v in T.config_dict(voc.cfg).items() if k != "phase_origin"}
    save_checkpoint(tmp_path / "final.pt", voc, cfg)
    old = T.load_vocoder(tmp_path)
    mel = torch.randn(1, 24, 128)
    assert old.cfg.phase_origin == "start" and torch.allclose(old(mel), voc.eval()(mel), atol=1e-5)
    save_checkpoint(tmp_path / "final.pt", voc, T.replace(voc.cfg, phase_origin="centre"))
    assert T.load_vocoder(tmp_path).cfg.phase_origin == "centre"


def test_vocoder_loss_trains(tmp_path):
    torch.manual_seed(0)
    cfg = T.VocoderConfig(channels=16, blocks=1)
    voc = T.Vocoder(cfg)
    batch = (torch.randn(2, 16, 128), torch.randn(2, 16 * 160) * 0.1)
    out = T.vocoder_loss(voc, batch, cfg)
    out["loss"].backward()
    assert set(out) == {"loss", "stft", "mel", "mcd"} and voc.head.weight.grad.abs().sum() > 0


def test_voice_embedding_changes_the_voice():
    m = untrained_speaker()
    assert m.voices == T.TALKER_VOICES and len(m.cond.voice_phone.weight) == 4
    phones = m.phone_tensor(T.text_phonemes("Hello there."))
    (_, a), (_, b) = m.plan(phones, 0), m.plan(phones, 1)
    assert a.shape == b.shape and not torch.equal(a, b)
    codes = torch.zeros(3, 2, dtype=torch.long)
    assert not torch.equal(T.codes_to_mel(m.codec, codes, 0), T.codes_to_mel(m.codec, codes, 3))
    with pytest.raises(ValueError, match="this Talker speaks"): T.speak("Hello.", m, voice="en-xx")
    with pytest.raises(ValueError, match="not one of voices"): T.Talker(load_config("talker_tiny", voice="en-gb-scotland"), [T.PAD, T.SIL, T.UNK])


@pytest.mark.parametrize("decode", ["expected", "codes"])
@pytest.mark.parametrize("chunk_frames", [1, 3, 8])
def test_stream_equals_whole(chunk_frames, decode):
    torch.manual_seed(0)
    m = untrained_speaker()
    m.cfg.decode = decode
    torch.nn.init.normal_(m.cond.duration[1].bias, 2.0, 0.01)            # about 6 mel frames a phoneme: a few seconds of audio
    text = "Hello there. How are you today?"
    whole, sr = T.speak(text, m, voice="en-gb-x-rp")
    chunks = list(T.speak(text, m, voice="en-gb-x-rp", stream=True, chunk_frames=chunk_frames))
    assert len(chunks) > 1 and sr == 16000 and len(whole) % 1280 == 0
    streamed = torch.cat(chunks)
    assert streamed.shape == whole.shape
    assert (streamed - whole).abs().max() <= 1e-4 * whole.abs().max()     # stated tolerance: 1e-4 of the peak


def test_expected_decoding_reads_the_probabilities():
    torch.manual_seed(0)
    m = untrained_speaker()
    torch.nn.init.normal_(m.cond.duration[1].bias, 2.0, 0.01)
    text = "Hello there. How are you today?"
    m.cfg.decode = "codes"
    greedy = T.speak(text, m)[0]
    m.cfg.decode = "expected"
    expected = T.speak(text, m)[0]
    assert greedy.shape == expected.shape and (greedy - expected).abs().max() > 1e-3     # an unsure Talker: they differ
    (codes, latents), = T.speak_codes(m, [text], expected=True)
    assert torch.equal(codes, T.speak_codes(m, [text])[0])                                # the same generated frames
    assert latents.shape == (len(codes), m.codec.rvq.codebooks[0].shape[1]) and latents.is_floating_point()
    assert torch.allclose(T.speak_mels(m, [text])[0], T.codes_to_mel(m.codec, latents, 0))
    assert torch.allclose(T.codes_to_mel(m.codec, m.codec.rvq.lookup(codes), 0), T.codes_to_mel(m.codec, codes, 0))
    m.cfg.decode = "nearest"
    with pytest.raises(ValueError, match="decode must be 'expected' or 'codes'"): T.speak(text, m)
    with pytest.raises(ValueError, match="decode must be 'expected' or 'codes'"): T.speak(text, m, stream=True)


def test_stream_without_vocoder_is_one_chunk():
    m = untrained_speaker()
    T.attach_vocoder(m, None)
    chunks = list(T.speak("Hello there.", m, stream=True))
    assert len(chunks) == 1 and torch.equal(chunks[0], T.speak("Hello there.", m)[0])
    with pytest.raises(ValueError, match="nothing to speak"): T.speak("", m, stream=True)   # checked at the call, not at the first chunk


def test_mel_cepstral_distance():
    w = T.data.synthesize("Is the red circle above the blue square?")[0]
    assert T.mel_cepstral_distance(w, w) < 1e-4
    assert T.mel_cepstral_distance(w, torch.randn_like(w) * 0.1) > 5
    assert T.dtw_mean(torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)) == pytest.approx(0.0)


def test_voice_classifier_shapes():
    clf = T.VoiceClassifier(T.VoiceIdConfig())
    assert clf(torch.randn(2, 150, 128)).shape == (2, 4)
    assert clf.predict(torch.randn(16000) * 0.1) in T.TALKER_VOICES
    crops = T.VoiceCrops([torch.randn(200, 128), torch.randn(90, 128)], [0, 2], 150)
    assert len(crops) == 2 and crops[1][0].shape == (150, 128) and crops[1][1] == 2


def test_bad_voice_config():
    with pytest.raises(ValueError, match="unknown espeak voice"):
        T.check_voices(load_config("talker_tiny", voices=["en-us", "en-nowhere"]))

def test_corpus_is_the_same_whatever_the_workers():
    "The corpus is spoken in forked workers, a fresh engine per chunk: an utterance must not depend on which process spoke it."
    import functools, numpy as np
    from muomni import data as D
    cfg = load_config("talker_tiny", preset="smoke")
    picked = [dict(text=t, source="s") for t in ("the red circle is above the square.", "good morning to you all.", "two blue stars.",
                                                 "what light through yonder window breaks?", "it is raining again today.")]
    make = functools.partial(T._corpus_chunk, picked=picked, cfg=cfg, keep_all=True)
    serial, forked = (D.in_chunks(make, len(picked), workers=w, chunk=2) for w in (1, 2))
    assert [u["voice"] for u in serial] == [cfg.voices[i % len(cfg.voices)] for i in range(len(picked))]
    for a, b in zip(serial, forked):
        assert (a["text"], a["voice"], a["source"]) == (b["text"], b["voice"], b["source"])
        for k in ("mel", "wave", "phones", "durs"): np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)

def test_roundtrip_summary_brackets_the_vocoder_difference():
    "The vocoder comparison carries a paired-bootstrap interval of the CER difference, above zero when the vocoder loses a letter everywhere."
    texts = ["a red circle", "two blue squares", "the green star", "good morning", "a yellow cross", "it is raining"]
    rows = [dict(text=t, hyp=t[:-1], floor=t, codec=t, source="", voice="en-us", ratio=1.0, wave=None,
                 hyp_true_vocoder=t, hyp_true_griffinlim=t, hyp_talker_griffinlim=t,
                 **{f"mcd_{k}": 5.0 for k in ("true_griffinlim", "true_vocoder", "talker_griffinlim", "talker_vocoder")})
            for t in texts]
    out = T.roundtrip_summary(rows)
    assert 0 < out["cer_talker_vocoder_minus_griffinlim_lo"] <= out["cer_talker_vocoder_minus_griffinlim_hi"]
    assert out["cer_true_vocoder_minus_griffinlim_lo"] == out["cer_true_vocoder_minus_griffinlim_hi"] == 0.0
    assert out["cer_talker_vocoder"] > out["cer_talker_griffinlim"] == 0.0
