"""The split registry, checked across stages. Every stage's training material and every stage's evaluation material
is loaded through the stages' own data functions (smoke preset, a fresh data folder) and checked for overlap wherever
a metric or a judge needs there to be none: the Talker's test sentences never reach Stage B's audio, Stage B's
language model or Stage E's targets; Stage E's test pictures, voices and transcripts never reach its training data;
tune and test share neither voices nor sentences."""
import json

import pytest
import torch

from conftest import link_corpora
from muomni import data as D, thinker as A, audio as B, talker as T, omni as E
from muomni.core import load_config
from muomni.thinker import Thinker, train_tokenizer
from muomni.vision import VisionClassifier
from muomni.audio import AudioEncoder

norm = lambda texts: {D.normalize_transcript(t) for t in texts} - {""}


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    root = tmp_path_factory.mktemp("splits")
    data_dir = link_corpora(root / "data")
    cfg = lambda name, **kw: load_config(name, preset="smoke", data_dir=str(data_dir), device="cpu", **kw)
    out = dict(registry=D.split_registry(data_dir))
    out["A"] = A.text_corpus(cfg("thinker_tiny"))
    bcfg = cfg("audio_enc_tiny", lm_corpus="shakespeare")
    out["B"] = B.speech_features(bcfg)
    out["B_lm"] = B.lm_texts(bcfg, out["B"]["train"]["texts"])
    out["D"] = T.speech_corpus(cfg("talker_tiny"), progress=False)
    ecfg = cfg("omni_sft_tiny", save_dir=str(root / "omni"))
    tok = train_tokenizer(out["A"]["train"][:2], 300)
    torch.manual_seed(0)
    omni = E.Omni(ecfg, Thinker(cfg("thinker_tiny", vocab_size=tok.vocab_size)), tok,
                  VisionClassifier(cfg("vision_tiny", shapes=list(D.SHAPES), colours=list(D.COLOURS))), AudioEncoder(cfg("audio_enc_tiny")))
    out["E"] = E.build_sft_data(ecfg, omni)
    return out


def e_training_targets(sft) -> set[str]:
    "Every answer Stage E trains on (captions, transcripts, one-word answers), as text."
    return {ex["answer"] for ex in sft["train"].examples if "answer" in ex}


def test_text_works_disjoint(material):
    reg = material["registry"]
    assert not set(reg["text"]["train"]) & set(reg["text"]["test"])
    assert len(material["A"]["test"]) == len(reg["text"]["test"])


def test_talker_test_sentences_reach_no_training_text(material):
    talker_test = norm(u["text"] for u in material["D"]["test"])
    assert talker_test
    assert not talker_test & norm(material["B"]["train"]["texts"]), "Stage B's training audio speaks a Talker test sentence"
    assert not talker_test & norm(material["B_lm"]), "Stage B's language model read a Talker test sentence"
    assert not talker_test & norm(e_training_targets(material["E"])), "Stage E trains on a Talker test sentence"
    assert not talker_test & norm(D.text_sentences(material["A"]["train"])), "Stage A's training works hold a Talker test sentence"
    assert not talker_test & norm(u["text"] for u in material["D"]["train"]), "the Talker trained on its own test sentence"


def test_stage_b_evaluation_unseen(material):
    b = material["B"]
    train_texts, train_voices, lm = norm(b["train"]["texts"]), set(b["train"]["voices"]), norm(material["B_lm"])
    for split in ("tune", "test", "test_accent"):
        assert not norm(b[split]["texts"]) & train_texts, split
        assert not norm(b[split]["texts"]) & lm, f"the LM read a {split} sentence"
        assert not set(b[split]["voices"]) & train_voices, split
    assert not set(b["tune"]["voices"]) & set(b["test"]["voices"] + b["test_accent"]["voices"])
    assert not norm(b["tune"]["texts"]) & norm(b["test"]["texts"] + b["test_accent"]["texts"])


def test_stage_e_test_material_never_trained_on(material):
    sft = material["E"]
    train = sft["train"]
    used = lambda items, key: {it[key] for it in items if it.get(key, -1) >= 0}
    train_images, train_audio = used(train.examples, "image"), used(train.examples, "audio")
    for name, items in sft["test"].items():
        assert not used(items, "image") & train_images, f"{name}: a test picture is a training picture"
        assert not used(items, "audio") & train_audio, f"{name}: a test clip is a training clip"
    bank = train.image_bank
    train_rows = bank[sorted(train_images)].flatten(1)
    for i in used(sft["test"]["vqa"] + sft["test"]["vqa_combo"], "image"):          # not even the same pixels elsewhere
        assert not (train_rows == bank[i].flatten()).all(1).any()
    assert not norm(it["answer"] for it in sft["test"]["asr"]) & norm(e_training_targets(sft))
    spoken = {s: D.read_manifest(p) for s, p in sft["spoken"].items()}
    assert not {r["voice"] for r in spoken["test"]} & {r["voice"] for r in spoken["train"]}
    assert not {r["voice"] for r in spoken["test"]} & set(material["registry"]["voices"]["train"])


def test_registry_pools_disjoint_at_full_size(material):
    "What every preset draws from: the pools themselves, whatever a stage's sizes."
    data_dir = material["E"]["speech"]["train"].parents[3]
    keys = {s: norm(r["text"] for r in D.registry_sentences(s, data_dir)) for s in ("train", "tune", "test")}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["tune"] and not keys["tune"] & keys["test"]


def test_heldout_wordings_reach_no_training_text(material):
    "A held-out question wording is asked only at test time: no stage trains on a sentence in one, typed or spoken."
    held = norm(q["question"] for s in D.all_shape_specs() for q in D.question_set(s, "test"))
    assert held and material["registry"]["questions"]["test"] == list(D.HELDOUT_WORDINGS)
    data_dir = material["E"]["speech"]["train"].parents[3]
    assert not held & norm(r["text"] for r in D.registry_sentences("train", data_dir)), "a registry training sentence is held out"
    assert not held & norm(material["B"]["train"]["texts"]), "Stage B's training audio speaks a held-out wording"
    assert not held & norm(material["B_lm"]), "Stage B's language model read a held-out wording"
    assert not held & norm(u["text"] for u in material["D"]["train"]), "the Talker trained on a held-out wording"
    sft = material["E"]
    typed = norm(ex.get("text") or "" for ex in sft["train"].examples) | norm(ex.get("question") or "" for ex in sft["train"].examples)
    assert not held & typed, "Stage E trains on a held-out wording"
    assert not held & norm(r["text"] for r in D.read_manifest(sft["spoken"]["train"])), "Stage E's spoken training questions"
    tested = sft["test"]["vqa_heldout_wording"] + sft["test"]["spoken_heldout_wording"]
    assert tested and all(it["wording"] in D.HELDOUT_WORDINGS for it in tested)
    assert all(it["wording"] not in D.HELDOUT_WORDINGS for it in sft["test"]["vqa"] + sft["test"]["spoken"])


def test_out_of_scope_test_prompts_never_trained_on(material):
    sft = material["E"]
    train = {D.normalize_transcript(ex["text"]) for ex in sft["train"].examples if ex["kind"] == "out_of_scope" and ex.get("text")}
    test = [it for it in sft["test"]["out_of_scope"] if it["type"] in ("greeting", "unknown") and it.get("text")]
    assert test and not {D.normalize_transcript(it["text"]) for it in test} & train
    used = lambda items, key: {it[key] for it in items if it.get(key, -1) >= 0}
    oos_test = [it for it in sft["test"]["out_of_scope"] if it["type"] in ("no_speech", "no_shape")]
    assert not used(oos_test, "audio") & used(sft["train"].examples, "audio")
    assert not used([it for it in oos_test if it["type"] == "no_shape"], "image") & used(sft["train"].examples, "image")


def test_training_sentences_checked_once_then_read_back(material):
    "Every stage reads the registry's training sentences: the first read checks them and writes them beside the registry."
    import re
    data_dir = material["E"]["speech"]["train"].parents[3]
    cache = D.data_root(data_dir) / f"sentences_train_{D.split_registry(data_dir)['digest']}.json"
    built = D.registry_sentences("train", data_dir)
    assert cache.exists() and built
    D._train_sentences.cache_clear()
    assert D.registry_sentences("train", data_dir) == built
    good = cache.read_text()
    test_sentence = D.registry_sentences("test", data_dir)[0]["text"]
    leaked = json.dumps(json.loads(good) + [[test_sentence, "everyday"]])
    try:
        for bad in ("{not json", "[[1, 2, 3]]", leaked):     # not JSON, not pairs, a test sentence slipped in
            cache.write_text(bad)
            D._train_sentences.cache_clear()
            with pytest.raises(D.DataError, match=re.escape(cache.name)): D.registry_sentences("train", data_dir)
    finally:
        cache.write_text(good); D._train_sentences.cache_clear()
