"Stage D: codec and Talker unit tests (fast; the notebook's smoke run covers training end to end)."
import json

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
    phones, frame_phone = torch.randint(3, 23, (2, 7)), torch.randint(0, 7, (2, 40))
    cond = m.cond.frames(m.cond.encode(phones)[0], frame_phone)
    codes = m.generate(cond)
    assert codes.shape == (2, 5, 2)
    logits, log_dur = m(phones, frame_phone, codes)
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
    cfg.save_dir, cfg.codec_dir = str(tmp_path / "talker"), str(codec_dir)
    save_checkpoint(tmp_path / "talker" / "final.pt", m, cfg)
    T.save_talker_extras(cfg.save_dir, m)
    loaded = T.load_talker(tmp_path / "talker")
    assert loaded.phones == m.phones and isinstance(loaded.codec, T.RVQCodec)
    assert json.loads((tmp_path / "talker" / "phones.json").read_text())["phones"][:3] == [T.PAD, T.SIL, T.UNK]


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
