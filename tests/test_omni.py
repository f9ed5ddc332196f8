"""Stage E (muomni.omni): config, chat template, batching, frozen encoders, save/load, chat CLI and bad input;
question records in many wordings, out-of-scope records and honest replies."""

import random

import numpy as np
import pytest
import torch
from PIL import Image

from muomni.core import CheckpointError, load_config, save_checkpoint
from muomni import omni as E, data as D
from muomni.thinker import Thinker, train_tokenizer
from muomni.vision import VisionClassifier
from muomni.audio import AudioEncoder

TEXT = ["what colour is the star? the red star is on the left. transcribe the audio. describe the picture. " * 30]

@pytest.fixture(scope="module")
def parts():
    tok = train_tokenizer(TEXT, 300)
    torch.manual_seed(0)
    thinker = Thinker(load_config("thinker_tiny", preset="smoke", vocab_size=tok.vocab_size)).eval()
    vision = VisionClassifier(load_config("vision_tiny", preset="smoke", shapes=["circle", "star"], colours=["red", "blue"])).eval()
    audio = AudioEncoder(load_config("audio_enc_tiny", preset="smoke")).eval()
    return thinker, tok, vision, audio

def omni_cfg(tmp_path, **kw):
    return load_config("omni_sft_tiny", preset="smoke", save_dir=str(tmp_path / "omni"), device="cpu", **kw)

def make_omni(parts, cfg):
    thinker, tok, vision, audio = parts
    return E.Omni(cfg, thinker, tok, vision, audio)

def saved_omni(parts, tmp_path):
    cfg = omni_cfg(tmp_path)
    omni = make_omni(parts, cfg)
    save_checkpoint(tmp_path / "omni" / "final.pt", omni, cfg)
    E.save_components(omni, cfg.save_dir)
    return omni, cfg

PIC = Image.new("RGB", (50, 70), (200, 30, 30))

def test_config_presets_and_save_dirs():
    assert load_config("omni_sft_tiny").save_dir == "checkpoints/omni_final"
    for preset in ("smoke", "laptop"):
        cfg = load_config("omni_sft_tiny", preset=preset)
        assert isinstance(cfg, E.OmniConfig) and cfg.save_dir == f"checkpoints/omni_{preset}"
    with pytest.raises(ValueError, match="vision_tokenz"): load_config("omni_sft_tiny", vision_tokenz="cls")
    with pytest.raises(ValueError, match="freeze_encoders"): load_config("omni_sft_tiny", freeze_encoders="yes")

def test_stage_dirs_follow_the_preset(tmp_path):
    cfg = load_config("omni_sft_tiny", preset="smoke")
    assert E.stage_dir(cfg, "vision_encoder").name == load_config("vision_tiny", preset="smoke").save_dir.split("/")[-1]
    assert E.stage_dir(cfg, "thinker").name == "thinker_smoke"
    assert E.stage_dir(load_config("omni_sft_tiny", preset="smoke", thinker=str(tmp_path)), "thinker") == tmp_path
    with pytest.raises(ValueError, match="unknown part"): E.stage_dir(cfg, "decoder")

def test_missing_checkpoint_outside_smoke_is_an_error(tmp_path):
    cfg = load_config("omni_sft_tiny", preset="laptop", thinker=str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="nothing"): E.load_thinker_part(cfg)

def test_chat_template_labels_only_the_answer(parts):
    tok = parts[1]
    ids, labels = E.chat_example(tok, "red", "what colour is the star?", n_image=4, n_audio=3)
    assert ids.count(E.IMAGE_SLOT) == 4 and ids.count(E.AUDIO_SLOT) == 3 and len(ids) == len(labels)
    assert [l for l in labels if l != E.IGNORE] == tok.encode("red") + [tok.token_id("<|end|>")]
    assert ids.index(tok.token_id("<|image|>")) < ids.index(E.IMAGE_SLOT) < ids.index(tok.token_id("<|audio|>"))

def test_bad_model_settings(parts, tmp_path):
    with pytest.raises(ValueError, match="linear"): E.Projector(4, 4, "conv")
    with pytest.raises(ValueError, match="vision_tokens"): make_omni(parts, omni_cfg(tmp_path, vision_tokens="all"))
    with pytest.raises(ValueError, match="vision_pool"): make_omni(parts, omni_cfg(tmp_path, vision_pool=0))
    with pytest.raises(TypeError, match="OmniConfig"): E.sft_omni(load_config("vision_tiny", preset="smoke"))

@pytest.mark.parametrize("tokens,pool", [("cls", 1), ("patches", 1), ("both", 2)])
def test_image_tokens(parts, tmp_path, tokens, pool):
    omni = make_omni(parts, omni_cfg(tmp_path, vision_tokens=tokens, vision_pool=pool))
    feats = omni.image_features(omni.pixels([PIC, PIC.convert("L")]))
    assert feats.shape == (2, omni.n_image_tokens, 128)

def test_frozen_encoders_get_no_gradient(parts, tmp_path):
    omni = make_omni(parts, omni_cfg(tmp_path))
    omni.train()
    assert omni.thinker.training and not omni.vision.training and not omni.audio.training
    frames = omni.audio_features([0.1 * torch.randn(12000)])
    feats = omni.image_features(omni.pixels([PIC]))
    tok = parts[1]
    items = [dict(zip(("ids", "labels"), E.chat_example(tok, "red", "what colour?", n_image=omni.n_image_tokens)), image=0, audio=-1),
             dict(zip(("ids", "labels"), E.chat_example(tok, "hi", E.PROMPTS["asr"], n_audio=len(frames[0]))), image=-1, audio=0)]
    batch = E.collate(items, feats.detach(), [f.detach() for f in frames], tok.pad_id)
    E.sft_loss(omni, batch).backward()
    assert all(p.grad is None for p in omni.vision.parameters()) and all(p.grad is None for p in omni.audio.parameters())
    assert omni.vision_proj.net.weight.grad is not None and omni.audio_proj.net.weight.grad is not None
    assert omni.thinker.lm_head.weight.grad is not None
    bad = dict(batch, image_feats=torch.cat([batch["image_feats"]] * 2))
    with pytest.raises(ValueError, match="slots"): omni(**bad)
    omni.zero_grad(set_to_none=True)

def test_save_load_round_trip(parts, tmp_path):
    omni, cfg = saved_omni(parts, tmp_path)
    loaded = E.Omni.load(cfg.save_dir, device="cpu")
    wave = 0.1 * torch.randn(16000)
    assert loaded.chat("what colour is it?", image=PIC, max_new_tokens=5) == omni.chat("what colour is it?", image=PIC, max_new_tokens=5)
    assert loaded.transcribe(wave, max_new_tokens=5) == omni.transcribe(wave, max_new_tokens=5)
    assert loaded.classify(PIC) == omni.classify(PIC)
    history = [dict(text="what colour?", image=PIC, answer="red")]
    assert loaded.chat("and the shape?", history=history, max_new_tokens=3) == omni.chat("and the shape?", history=history, max_new_tokens=3)

def test_load_errors(parts, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"): E.Omni.load(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="components.json"): E.Omni.load(tmp_path / "empty")
    omni, cfg = saved_omni(parts, tmp_path)
    save_checkpoint(tmp_path / "omni" / "final.pt", parts[0], parts[0].cfg)          # a Thinker checkpoint in its place
    with pytest.raises(CheckpointError, match="not an Omni"): E.Omni.load(cfg.save_dir)

def test_chat_bad_input(parts, tmp_path):
    omni = make_omni(parts, omni_cfg(tmp_path))
    with pytest.raises(ValueError, match="nothing to answer"): omni.chat()
    with pytest.raises(ValueError, match="nothing to answer"): omni.chat("   ")
    with pytest.raises(TypeError, match="string"): omni.chat(42)
    with pytest.raises(ValueError, match="too short"): omni.chat("hi", audio=torch.zeros(10))
    with pytest.raises(ValueError, match="NaN"): omni.chat("hi", audio=torch.full((4000,), float("nan")))
    with pytest.raises(FileNotFoundError): omni.chat("hi", image=tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError): omni.chat("hi", audio=tmp_path / "missing.wav")
    with pytest.raises(RuntimeError, match="Talker"): omni.speak("hello")
    with pytest.raises(ValueError, match="nothing to speak"): omni.speak("")

def test_answers_and_wer():
    assert E.normalize_answer(" Red! ") == "red"
    assert E.question_type("where is the red star?") == "position" and E.question_type("How many red shapes are there") == "count"
    assert E.question_type("the star is what colour?") == "colour" and E.question_type("name the shape of the red object.") == "shape"
    assert E.question_type("what is the capital of france?") == "other" and E.question_type("what colour is the car?") == "other"
    wer, cer = E.word_error_rate(["the red star"], ["the red car"])
    assert abs(wer - 1 / 3) < 1e-9 and 0 < cer < 1
    assert E.word_error_rate(["Where is it?"], ["where is it"]) == (0.0, 0.0)

@pytest.mark.parametrize("mode", ["mean", "stack", "stack_ctc"])
def test_audio_tokens_are_12_5_hz(parts, tmp_path, mode):
    omni = make_omni(parts, omni_cfg(tmp_path, audio_features=mode))
    frames = omni.audio_features([0.1 * torch.randn(32000), 0.1 * torch.randn(16000, 2)], sample_rate=16000)
    assert [f.shape[1] for f in frames] == [omni.audio_width] * 2
    assert abs(len(frames[0]) - 25) <= 2 and abs(len(frames[1]) - 12.5) <= 2
    assert omni.audio_proj(frames[0]).shape == (len(frames[0]), parts[0].cfg.d_model)
    with pytest.raises(ValueError, match="audio_features"): make_omni(parts, omni_cfg(tmp_path, audio_features="mfcc"))


# --- transcription: the joint Thinker + CTC + LM decoder --------------------------------------------------------------

def ctc_saying(text: str, frames_per_char: int = 3):
    "(frames, len(VOCAB)) CTC log-probabilities whose best path spells `text` (blanks between characters)."
    from muomni.audio import VOCAB
    from muomni.data import CHARSET
    path = [0] + [s for ch in text for s in [1 + CHARSET.index(ch)] * (frames_per_char - 1) + [0]]
    lp = torch.full((len(path), len(VOCAB)), -12.0)
    lp[torch.arange(len(path)), torch.tensor(path)] = 0.0
    return lp.log_softmax(-1)

def test_joint_decoder_settings_are_checked(parts, tmp_path):
    with pytest.raises(ValueError, match="asr_decoder"): make_omni(parts, omni_cfg(tmp_path, asr_decoder="beam"))
    with pytest.raises(ValueError, match="asr_target='chars'"): make_omni(parts, omni_cfg(tmp_path, asr_target="bpe"))
    assert make_omni(parts, omni_cfg(tmp_path, asr_target="bpe", asr_decoder="greedy")).cfg.asr_decoder == "greedy"

def test_joint_decoder_reads_the_ctc_evidence(parts, tmp_path):
    omni = make_omni(parts, omni_cfg(tmp_path))
    clip = omni.audio_features([0.1 * torch.randn(8000)])
    tok = parts[1]
    batch = E.collate([dict(ids=E.user_turn(tok, E.PROMPTS["asr"], 0, len(clip[0])), audio=0)], None, clip, tok.pad_id, left_pad=True)
    lp = ctc_saying("a red star")
    # with all the weight on the CTC scores, the untrained Thinker cannot stop it from writing what the frames say
    assert E.joint_transcribe(omni, batch, lp, beam_size=4, ctc_weight=1.0, length_bonus=0.0) == "a red star"
    assert E.joint_transcribe(omni, batch, lp, beam_size=4, ctc_weight=1.0, length_bonus=0.0, max_len=3) == "a r"
    silent = torch.full((6, lp.shape[1]), -12.0); silent[:, 0] = 0.0
    assert E.joint_transcribe(omni, batch, silent.log_softmax(-1), ctc_weight=1.0, length_bonus=0.0) == ""

def test_transcription_requests_go_to_transcribe(parts, tmp_path):
    omni = make_omni(parts, omni_cfg(tmp_path))
    omni.transcribe = lambda wave, sample_rate=16000, **kw: "routed"
    wave = 0.1 * torch.randn(16000)
    assert omni.chat("Transcribe this.", audio=wave) == "routed"
    assert omni.chat("please write down what you hear", audio=wave) == "routed"
    assert omni.chat("what colour is the star?", audio=wave, max_new_tokens=3) != "routed"
    assert omni.chat("transcribe the audio", audio=wave, image=PIC, max_new_tokens=3) != "routed"          # a picture too
    assert omni.chat("transcribe the audio", audio=wave, temperature=0.8, max_new_tokens=3) != "routed"     # sampling asked for
    assert not E.is_transcription_request(None) and E.is_transcription_request("TRANSCRIBE")

def test_char_lm_travels_with_the_save_folder(parts, tmp_path):
    from muomni.audio import CharNgramLM
    thinker, tok, vision, _ = parts
    audio = AudioEncoder(load_config("audio_enc_tiny", preset="smoke")).eval()
    audio.lm = CharNgramLM(3).fit(["the red star", "a blue circle"])
    cfg = omni_cfg(tmp_path)
    omni = E.Omni(cfg, thinker, tok, vision, audio)
    save_checkpoint(tmp_path / "omni" / "final.pt", omni, cfg)
    E.save_components(omni, cfg.save_dir)
    loaded = E.Omni.load(cfg.save_dir, device="cpu")
    assert loaded.char_lm is not None and loaded.char_lm.logp("the re", "d") == audio.lm.logp("the re", "d")
    wave = 0.1 * torch.randn(20000)
    assert loaded.transcribe(wave, max_new_tokens=6) == omni.transcribe(wave, max_new_tokens=6)
    long = 0.1 * torch.randn(16000 * 20)                                       # longer than transcribe_chunk_s: cut up
    assert loaded.transcribe(long, max_new_tokens=4) == omni.transcribe(long, max_new_tokens=4)


# --- questions in many wordings, and out-of-scope input ---------------------------------------------------------------

REGISTRY_QUESTIONS = D.question_registry()
SHAPES = D.shapes_dataset(12, seed=3, image_size=24)

def test_question_records_carry_type_and_wording_from_the_generator():
    q = REGISTRY_QUESTIONS
    for split in ("train", "test"):
        recs = E.shape_records(SHAPES, 100, 0, random.Random(0), q[split], q["wordings"])
        assert {r["wording"] for r in recs} <= set(q[split]) and len(recs) == sum(3 + (it["count"] == 1) for it in SHAPES)
        for r in recs:
            spec = SHAPES[r["image"] - 100]["spec"]
            assert r["type"] == q["wordings"][r["wording"]][0] == E.question_type(r["text"])
            assert r["answer"] == D.shape_question(spec, r["wording"])["answer"]
    two = E.shape_records(SHAPES, 0, 2, random.Random(0), q["train"], q["wordings"], capitals=1.0)
    assert len(two) == 2 * len(SHAPES) and all(r["text"][0].isupper() for r in two)
    spoken, distinct = E.spoken_records(SHAPES, 0, 40, random.Random(0), q["test"], q["wordings"], max_questions=8)
    assert len(spoken) == 40 and len(distinct) <= 8 and {r["question"] for r in spoken} <= set(distinct)
    assert [r["type"] for r in spoken[:4]] == list(E.QUESTION_TYPES) and all(r["wording"] in D.HELDOUT_WORDINGS for r in spoken)

def test_out_of_scope_records_and_their_inputs():
    q = REGISTRY_QUESTIONS
    recs = {s: E.out_of_scope_records(s, 8, random.Random(0), q, (0, SHAPES), (50, 8), (20, 8), [E.PROMPTS["asr"]]) for s in ("train", "test")}
    for split, rs in recs.items():
        assert [sum(r["type"] == k for r in rs) for k in E.OUT_OF_SCOPE_KINDS] == [8] * 4
        assert all(r["answer"] == E.HONEST_REPLIES[r["type"]] and r["kind"] == "out_of_scope" for r in rs)
        assert all(50 <= r["image"] < 58 for r in rs if r["type"] == "no_shape") and all(20 <= r["audio"] < 28 for r in rs if r["type"] == "no_speech")
    typed = lambda split: {D.normalize_transcript(r["text"]) for r in recs[split] if r["text"] and r["type"] in ("greeting", "unknown")}
    assert not typed("train") & typed("test")
    shape_questions = [r["text"] for r in recs["test"] if r["type"] in ("unknown", "no_shape") and E.question_type(r["text"] or "") != "other"]
    assert shape_questions and all(D.question_wording(t) in D.HELDOUT_WORDINGS for t in shape_questions)
    rng = np.random.default_rng(0)
    waves = [E.no_speech_wave(rng) for _ in range(12)]
    assert all(8000 <= len(w) <= 64000 and torch.isfinite(w).all() and w.abs().max() < 0.25 for w in waves)

def test_chat_never_answers_with_nothing(parts, tmp_path, monkeypatch):
    omni = make_omni(parts, omni_cfg(tmp_path))
    monkeypatch.setattr(E, "answer_batch", lambda *a, **kw: [""])
    assert omni.chat("what is the capital of france?") == E.HONEST_REPLIES["unknown"]
    assert omni.chat("what colour is the star?", image=PIC) == E.HONEST_REPLIES["unknown"]
    omni.transcribe = lambda wave, sample_rate=16000, **kw: ""                  # an empty transcript: no speech heard
    assert omni.chat("Transcribe the audio.", audio=0.001 * torch.randn(16000)) == E.HONEST_REPLIES["no_speech"]

@pytest.mark.parametrize("decoder", ["greedy", "joint"])
def test_transcribe_gives_silence_an_empty_transcript(parts, tmp_path, monkeypatch, decoder):
    omni = make_omni(parts, omni_cfg(tmp_path, asr_decoder=decoder))
    monkeypatch.setattr(E, "answer_batch", lambda *a, **kw: ["I hear no speech."])
    monkeypatch.setattr(E, "joint_transcribe", lambda *a, **kw: "to be or not to be")
    silence = E.no_speech_wave(np.random.default_rng(1))
    assert omni.transcribe(silence) == ""
    assert omni.chat("transcribe this", audio=silence) == E.HONEST_REPLIES["no_speech"]
    monkeypatch.setattr(E, "answer_batch", lambda *a, **kw: ["a red star"])         # speech heard: transcribed as usual
    assert omni.transcribe(silence) == ("a red star" if decoder == "greedy" else "to be or not to be")
