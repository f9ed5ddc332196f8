"Stage B (muomni.audio): bad input, shapes, decoding, loading and transcription (fast; no training run)."
import json, math
import numpy as np
import pytest
import torch

from muomni.core import load_config, save_checkpoint, CheckpointError
from muomni import audio as A
from muomni import data


@pytest.fixture(scope="module")
def small_cfg():
    return load_config("audio_enc_tiny", preset="smoke")


@pytest.fixture(scope="module")
def model(small_cfg):
    torch.manual_seed(0)
    return A.AudioEncoder(small_cfg).eval()


def test_tiny_parameter_count():
    cfg = load_config("audio_enc_tiny")
    m = A.AudioEncoder(cfg)
    n = sum(p.numel() for p in m.parameters())
    assert abs(n - 2.05e6) / 2.05e6 < 0.01
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff, cfg.n_mels) == (192, 4, 3, 768, 128)


def test_config_rejects_unknown_and_bad_types(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"kind": "audio", "d_modell": 3}))
    with pytest.raises(ValueError, match="d_modell"): load_config(p)
    p.write_text(json.dumps({"kind": "audio", "d_model": "big"}))
    with pytest.raises(ValueError, match="d_model"): load_config(p)


def test_bad_architecture_values():
    with pytest.raises(ValueError, match="power of two"): A.AudioEncoder(load_config({"kind": "audio", "downsample": 3}))
    with pytest.raises(ValueError, match="divisible"): A.AudioEncoder(load_config({"kind": "audio", "d_model": 100, "n_heads": 3}))


def test_forward_shapes_and_padding_independence(model, small_cfg):
    mel = torch.randn(2, 203, small_cfg.n_mels)
    logits, n = model(mel, torch.tensor([203, 118]))          # 118: not a multiple of the front end's 4
    assert logits.shape == (2, 51, len(A.VOCAB)) and n.tolist() == [51, 30]
    alone, n1 = model(mel[1:, :118], torch.tensor([118]))
    torch.testing.assert_close(logits[1, :30], alone[0, :30], atol=1e-5, rtol=1e-5)
    # the last frames too: frames past an utterance's end are zeros between the convolutions, as when it is alone
    for t in (117, 118, 119):
        padded, n = model(mel[1:].expand(2, -1, -1).contiguous(), torch.tensor([t, 203]))
        alone, _ = model(mel[1:, :t], torch.tensor([t]))
        torch.testing.assert_close(padded[0, :int(n[0])], alone[0], atol=1e-5, rtol=1e-5)


def test_forward_rejects_wrong_mel_shape(model):
    with pytest.raises(ValueError, match="log-mels"): model(torch.randn(2, 50, 80))
    with pytest.raises(ValueError, match="log-mels"): model(torch.randn(50, 128))


def test_encode_gives_12_5_hz_tokens(model, small_cfg):
    wave = torch.randn(data.SAMPLE_RATE * 2)          # 2 s -> 200 mel frames -> 50 at 25 Hz -> 25 tokens
    tok, n = model.encode(wave)
    assert tok.shape[-1] == small_cfg.d_model and abs(int(n[0]) - 25) <= 1
    tok2, n2 = model.encode([torch.randn(8000), torch.randn(2, 44100)], sample_rate=44100)
    assert tok2.shape[0] == 2 and n2[0] < n2[1]


def test_ctc_loss_finite_and_lengths(model, small_cfg):
    batch = A.collate_speech([(torch.randn(160, small_cfg.n_mels), torch.tensor(A.encode_text("hello"))),
                              (torch.randn(90, small_cfg.n_mels), torch.tensor(A.encode_text("hi")))])
    model.train()
    loss = A.ctc_loss(model, batch)
    model.eval()
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()


def test_too_short_for_ctc_is_zeroed(model, small_cfg):
    "An utterance with more characters than frames has infinite CTC loss; zero_infinity keeps training alive."
    batch = A.collate_speech([(torch.randn(8, small_cfg.n_mels), torch.tensor(A.encode_text("a very long sentence")))])
    assert A.ctc_loss(model, batch).item() == 0.0


def test_greedy_and_beam_agree_on_a_clear_path():
    seq = list("hh_ee_ll_ll_oo")
    lg = torch.full((1, len(seq), len(A.VOCAB)), -12.0)
    for t, s in enumerate(seq): lg[0, t, A.VOCAB.index(s)] = 0.0
    assert A.greedy_decode(lg, torch.tensor([len(seq)])) == ["hello"]
    assert A.beam_decode(lg[0].log_softmax(-1), beam_size=4) == "hello"
    lm = A.CharNgramLM(4).fit(["hello world", "hello there"])
    assert A.beam_decode(lg[0].log_softmax(-1), lm, beam_size=4) == "hello"


def test_error_rates():
    assert A.error_rates(["a b c"], ["a b c"]) == dict(cer=0.0, wer=0.0)
    r = A.error_rates(["abcd efgh"], ["abcd"])
    assert math.isclose(r["wer"], 0.5) and math.isclose(r["cer"], 5 / 9)
    with pytest.raises(ValueError, match="hypotheses"): A.error_rates(["a"], [])


@pytest.mark.parametrize("smoothing", A.SMOOTHINGS)
def test_lm_is_a_distribution_and_roundtrips(smoothing):
    lm = A.CharNgramLM(3, smoothing).fit(["the cat sat", "the dog sat"])
    for history in ("the ", "zzq"):                                   # a seen and an unseen context
        total = sum(math.exp(lm.logp(history, c)) for c in data.CHARSET + "$")
        assert math.isclose(total, 1.0, rel_tol=1e-6)
    lm2 = A.CharNgramLM.from_state(lm.state_dict())
    assert lm2.smoothing == smoothing and lm2.logp("the c", "a") == lm.logp("the c", "a")
    with pytest.raises(ValueError, match="order"): A.CharNgramLM(0)
    with pytest.raises(ValueError, match="smoothing must be one of"): A.CharNgramLM(3, "laplace")


def test_kneser_ney_counts_continuations_and_discounts_below_the_count():
    lm = A.CharNgramLM(2).fit(["ab", "cb", "ab"])
    assert lm.counts["ab"] == 2 and lm.counts["b"] == 2           # "b" follows "a" and "c": two continuations, not three
    assert lm.counts["a"] == 1 and lm.counts["^a"] == 2            # "a" only ever follows the padding
    for row in A.kneser_ney_discounts(lm.counts, 2):
        assert len(row) == 3 and all(0.05 <= d <= k for k, d in zip((1, 2, 3), row))
    wb = A.CharNgramLM(2, "witten-bell").fit(["ab", "cb", "ab"])
    assert wb.counts["b"] == 3 and wb.discounts == []


def test_lm_file_loads_with_weights_only_in_every_format(tmp_path):
    lm = A.CharNgramLM(3).fit(["the cat sat", "the dog sat"])
    torch.save(lm.state_dict(), tmp_path / "char_lm.pt")
    back = A.CharNgramLM.from_state(torch.load(tmp_path / "char_lm.pt", weights_only=True))
    assert back.counts == lm.counts and back.totals == lm.totals and back.backoff == lm.backoff
    assert back.smoothing == "kneser-ney" and back.discounts == lm.discounts
    wb = A.CharNgramLM(3, "witten-bell").fit(["the cat sat", "the dog sat"])
    before_smoothings = {k: v for k, v in wb.state_dict().items() if k not in ("smoothing", "discounts")}
    old = A.CharNgramLM.from_state(before_smoothings)                 # files from before Kneser-Ney: Witten-Bell
    assert old.smoothing == "witten-bell" and old.logp("the c", "a") == wb.logp("the c", "a")
    first_format = dict(order=3, counts=dict(wb.counts))             # char_lm.pt files written before the string + tensor
    assert A.CharNgramLM.from_state(first_format).counts == wb.counts
    assert A.CharNgramLM.from_state(dict(order=1, grams="", counts=[], smoothing="witten-bell")).counts == {}
    with pytest.raises(ValueError, match="2 n-grams but 1 counts"): A.CharNgramLM.from_state(dict(order=3, grams="a\nb", counts=[1]))
    assert "discounts" not in lm.state_dict()                          # derived from the counts on loading


@pytest.mark.parametrize("wave,sr", [
    (torch.randn(16000 * 2), 16000),                  # mono 16 kHz
    (torch.randn(2, 22050 * 2), 22050),               # stereo, channels first
    (np.random.randn(8000 * 2, 2).astype("float32"), 8000),   # stereo, channels last, numpy
])
def test_transcribe_any_rate_and_channels(model, wave, sr):
    model.lm = None
    text = A.transcribe(wave, sr, model=model)
    assert text.strip() and text == A.transcribe(A.to_mono_16k(wave, sr), 16000, model=model)   # = its 16 kHz mono version


def test_transcribe_long_audio_is_chunked(model, monkeypatch):
    model.lm = None
    calls = []
    orig = A.wave_to_mel
    monkeypatch.setattr(A, "wave_to_mel", lambda w: calls.append(len(w)) or orig(w))
    A.transcribe(torch.randn(16000 * 45), 16000, model=model)
    assert len(calls) >= 3 and max(calls) <= model.cfg.chunk_s * 16000 and sum(calls) == 16000 * 45


def test_transcribe_bad_input(model):
    with pytest.raises(ValueError, match="1-D"): A.transcribe(torch.randn(2, 2, 100), 16000, model=model)
    with pytest.raises(ValueError, match="sample rate"): A.transcribe(torch.randn(1000), 0, model=model)
    assert A.transcribe(torch.zeros(10), 16000, model=model) == ""       # too short to hold speech


def test_load_audio_encoder_roundtrip_and_errors(tmp_path, small_cfg, model):
    ckpt = save_checkpoint(tmp_path / "final.pt", model, small_cfg)
    m2 = A.load_audio_encoder(tmp_path)
    for (k, a), b in zip(model.state_dict().items(), m2.state_dict().values()): assert torch.equal(a, b), k
    assert not m2.training and m2.lm is None
    with pytest.raises(FileNotFoundError): A.load_audio_encoder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="final.pt"): A.load_audio_encoder(tmp_path / "empty")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError): A.load_audio_encoder(tmp_path / "junk.pt")
    save_checkpoint(tmp_path / "other.pt", torch.nn.Linear(2, 2), {"kind": "vision"})
    with pytest.raises(CheckpointError, match="audio"): A.load_audio_encoder(tmp_path / "other.pt")


def test_length_bucket_sampler_resumable_and_complete():
    lengths = torch.randint(20, 500, (257,))
    s = A.LengthBucketSampler(lengths, 16, seed=3)
    epoch = [i for j in range(s.per_epoch) for i in s.batch(j)]
    assert len(epoch) == len(set(epoch)) == s.per_epoch * 16
    assert A.LengthBucketSampler(lengths, 16, seed=3, start=5).batch(5) == s.batch(5)
    tiny = A.LengthBucketSampler(torch.tensor([5, 6]), 4)       # fewer items than a batch
    assert len(tiny.batch(0)) == 4


def test_bench_smoke(small_cfg):
    from conftest import check_bench, linear_weights
    out = A.bench(small_cfg, steps=1, seconds=1.0)
    model = A.AudioEncoder(small_cfg)
    frames = model.downsample.out_size(100)                        # 1 s of log-mels at 25 Hz
    check_bench(out, "train_utterances_per_s", small_cfg.batch_size, 6 * linear_weights(model.blocks) * small_cfg.batch_size * frames)
    assert (out["batch_size"], out["utterance_s"], out["params"], out["device"]) == (small_cfg.batch_size, 1.0, sum(p.numel() for p in model.parameters()), "cpu")
    assert out["transcribe_rtf"] > 0 and out["transcribe_rtf_lm"] > 0      # seconds per second of audio: speed, not asserted


def test_default_model_is_reloaded_when_retrained(small_cfg, tmp_path, monkeypatch, capsys):
    "transcribe() keeps its default model, but not past a retrain in the same process: it loads the new one and says so."
    monkeypatch.setenv("MUOMNI_HOME", str(tmp_path))
    folder = tmp_path / "checkpoints" / "audio_encoder_laptop"
    wave = torch.randn(16000)
    torch.manual_seed(1); first = A.AudioEncoder(small_cfg).eval()
    save_checkpoint(folder / "final.pt", first, small_cfg)
    first.lm = None
    assert A.transcribe(wave, lm=False) == A.transcribe(wave, model=first, lm=False)
    assert A.transcribe(wave, lm=False) == A.transcribe(wave, model=first, lm=False)
    out = capsys.readouterr().out
    assert out.count(f"transcribe: loaded {folder / 'final.pt'}") == 1 and "transcribe: reloaded" not in out     # loaded once
    torch.manual_seed(2); second = A.AudioEncoder(small_cfg).eval()
    save_checkpoint(folder / "final.pt", second, small_cfg)                                          # Stage B retrained
    second.lm = None
    assert A.transcribe(wave, lm=False) == A.transcribe(wave, model=second, lm=False) != A.transcribe(wave, model=first, lm=False)
    assert f"transcribe: reloaded {folder / 'final.pt'}" in capsys.readouterr().out

def test_cached_features_same_in_forked_workers(tmp_path):
    "Log-mels computed in two forked workers equal those computed in this process, in manifest order, and the cache reads them back."
    csv = data.build_speech_set(["one red circle.", "good evening.", "two blue stars.", "it is late."], ["en-us", "en-gb-x-rp"],
                                tmp_path / "set", progress=False)
    forked = A.cached_features(csv, workers=2)
    rows = data.read_manifest(csv)
    assert len(forked["mels"]) == len(rows) == 4
    for m, row in zip(forked["mels"], rows):
        assert m.dtype == torch.float16
        torch.testing.assert_close(m, A.wave_to_mel(data.load_audio(row["path"])).to(torch.float16), rtol=0, atol=0)
    again = A.cached_features(csv, workers=1)
    assert all(torch.equal(a, b) for a, b in zip(forked["mels"], again["mels"]))

def test_beam_decode_all_same_in_forked_workers():
    "The set's beam searches run in two forked workers: the transcripts, in order, are those of one search after another."
    lm = A.CharNgramLM(3).fit(["the red circle", "a blue square", "two green stars", "the cat sat"])
    g = torch.Generator().manual_seed(0)
    lps = [(torch.randn(int(n), len(A.VOCAB), generator=g) * 3).log_softmax(-1) for n in torch.randint(5, 40, (9,), generator=g)]
    one_by_one = [A.beam_decode(lp, lm, beam_size=4, lm_weight=0.5, lm_bonus=1.0) for lp in lps]
    assert len(set(one_by_one)) > 3                        # distinct transcripts, so an order mix-up would show
    assert A.beam_decode_all(lps, lm, workers=2, beam_size=4, lm_weight=0.5, lm_bonus=1.0) == one_by_one

def test_a_lone_chunk_leaves_the_thread_count_alone(tmp_path):
    "With a single chunk in_chunks works in this process: the one-thread setting of a worker must not stick to it."
    csv = data.build_speech_set(["one red circle."], ["en-us"], tmp_path / "one", progress=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert len(A.cached_features(csv, workers=2)["mels"]) == 1
        assert torch.get_num_threads() == 2
    finally: torch.set_num_threads(before)
