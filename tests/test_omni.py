"Stage E (muomni.omni): config, chat template, batching, frozen encoders, save/load, chat CLI and bad input."

import pytest
import torch
from PIL import Image

from muomni.core import CheckpointError, load_config, save_checkpoint
from muomni import omni as E
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
    assert isinstance(loaded.chat("and the shape?", history=history, max_new_tokens=3), str)

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
    assert E.question_type("where is the red star?") == "position" and E.question_type("how many?") == "count"
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
