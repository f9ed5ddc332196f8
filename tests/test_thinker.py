"Stage A: tokenizer round trips, the Thinker's shapes, cache, generation, checkpoints and bad input."
import json, math
import pytest
import torch

from muomni.core import load_config, save_checkpoint, CheckpointError, count_parameters
from muomni.thinker import (SPECIAL_TOKENS, TextTokenizer, ThinkerConfig, Thinker, KVCache, train_tokenizer, generate,
                            sample_next, incremental_logits, param_breakdown, PackedText, eval_windows, count_chars,
                            text_metrics, token_stream, load_thinker, complete, lm_loss, FastDecoder)

TEXT = ["First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"] * 30

@pytest.fixture(scope="module")
def tok(tmp_path_factory): return train_tokenizer(TEXT, 320, tmp_path_factory.mktemp("tok"))

def small(**kw):
    base = dict(vocab_size=320, d_model=32, n_layers=2, n_heads=4, kv_groups=2, d_ff=64, ctx_len=16)
    return ThinkerConfig(**{**base, **kw})

# -- tokenizer ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("s", ["", "a", "Hello, world!", "naïve café — ünïcödé ✓ 漢字 🎭 \u200b", "\r\n\t\x00\x7f",
                               "  leading and trailing  ", "<|image|><|user|>what?<|end|><|assistant|>",
                               "<|not a special|>", "x" * 5000, "\U0010ffff\ud7ff\ue000"])
def test_roundtrip_any_utf8(tok, s):
    assert tok.decode(tok.encode(s)) == s

def test_roundtrip_random_unicode(tok):
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        cps = torch.randint(1, 0x10FFFF, (40,), generator=g).tolist()
        s = "".join(chr(c) for c in cps if not 0xD800 <= c <= 0xDFFF)
        assert tok.decode(tok.encode(s)) == s

def test_special_tokens_fixed_ids(tok):
    assert [tok.token_id(s) for s in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tok.encode("<|image|>") == [tok.token_id("<|image|>")]
    assert tok.encode("hi", bos=True, eos=True)[0] == tok.bos_id and tok.encode("hi", eos=True)[-1] == tok.eos_id

def test_tokenizer_cache_and_save(tok, tmp_path):
    p = tok.save(tmp_path / "tokenizer.json")
    again = TextTokenizer.load(tmp_path)
    assert again.encode("Speak, speak.") == tok.encode("Speak, speak.")
    cache = tmp_path / "cache"
    train_tokenizer(TEXT, 300, cache)
    assert len(list(cache.glob("bpe_300_*.json"))) == 1
    assert train_tokenizer(TEXT, 300, cache).vocab_size == train_tokenizer(TEXT, 300).vocab_size

def test_tokenizer_bad_input(tok, tmp_path):
    with pytest.raises(ValueError, match="too small"): train_tokenizer(TEXT, 200)
    with pytest.raises(ValueError, match="empty"): train_tokenizer([], 300)
    with pytest.raises(TypeError, match="str"): tok.encode(b"bytes")
    with pytest.raises(FileNotFoundError): TextTokenizer.load(tmp_path / "nope.json")

def test_token_stream_cached(tok, tmp_path):
    a = token_stream(tok, TEXT[:3], tmp_path)
    assert a.dtype == torch.int32 and a[-1].item() == tok.eos_id
    assert torch.equal(token_stream(tok, TEXT[:3], tmp_path), a) and len(list(tmp_path.glob("stream_*.pt"))) == 1

# -- model -------------------------------------------------------------------------------------------------------
def test_book_parameter_count():
    cfg = load_config("thinker_tiny")
    m = Thinker(cfg)
    n = count_parameters(m)
    assert abs(n / 20.32e6 - 1) < 0.01, n
    assert param_breakdown(m)["total"] == n

def test_tied_head_shares_weights():
    m = Thinker(small(tie_embeddings=True))
    assert m.lm_head.weight is m.embed_tokens.weight
    assert count_parameters(m) == count_parameters(Thinker(small())) - 320 * 32

@pytest.mark.parametrize("groups", [4, 2, 1])
@pytest.mark.parametrize("moe", [False, True])
def test_kv_cache_matches_full_forward(groups, moe):
    torch.manual_seed(0)
    m = Thinker(small(kv_groups=groups, use_moe=moe)).eval()
    ids = torch.randint(0, 320, (3, 21))
    with torch.no_grad(): full = m(ids)
    for chunk in (1, 4):
        assert torch.allclose(incremental_logits(m, ids, chunk=chunk), full, atol=1e-4)   # float32 rounding only

def test_kv_cache_long_sequence():
    "150 positions, fed 7 at a time through the cache, past the model's ctx_len: the logits of a full forward."
    torch.manual_seed(0)
    m = Thinker(small(ctx_len=200)).eval()
    ids = torch.randint(0, 320, (2, 150))
    with torch.no_grad(): full = m(ids)
    assert torch.allclose(incremental_logits(m, ids, chunk=7), full, atol=1e-4)

def test_padding_mask_left_padded_batch():
    torch.manual_seed(0)
    m = Thinker(small()).eval()
    ids = torch.randint(0, 320, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long); mask[0, :4] = 0
    with torch.no_grad():
        padded, alone = m(ids, attention_mask=mask), m(ids[:1, 4:])
    assert torch.allclose(padded[0, 4:], alone[0], atol=1e-5)
    assert torch.isfinite(padded).all()
    assert torch.allclose(incremental_logits(m, ids, mask)[0, 4:], alone[0], atol=1e-4)

def test_embeddings_in_hidden_out():
    m = Thinker(small()).eval()
    ids = torch.randint(0, 320, (2, 7))
    with torch.no_grad():
        logits, h = m(inputs_embeds=m.embed(ids), return_hidden=True)
        assert torch.allclose(logits, m(ids), atol=1e-6)
    assert h.shape == (2, 7, 32) and logits.shape == (2, 7, 320)
    assert m(ids, last_only=True).shape == (2, 1, 320)

def test_moe_aux_loss_and_gradients():
    m = Thinker(small(use_moe=True))
    out = lm_loss(m, torch.randint(0, 320, (2, 9)), aux_weight=0.01)
    assert set(out) == {"loss", "lm_loss", "aux_loss"} and out["aux_loss"] >= 0.99
    out["loss"].backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if "router" in n)

def test_forward_bad_input():
    m = Thinker(small())
    with pytest.raises(ValueError, match="exactly one"): m()
    with pytest.raises(ValueError, match="exactly one"): m(torch.zeros(1, 2, dtype=torch.long), inputs_embeds=torch.zeros(1, 2, 32))
    with pytest.raises(ValueError, match=r"\[0, 320\)"): m(torch.tensor([[5, 320]]))
    with pytest.raises(ValueError, match=r"\[0, 320\)"): m(torch.tensor([[-1, 3]]))
    with pytest.raises(ValueError, match="batch, time"): m(torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="integer"): m(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="inputs_embeds"): m(inputs_embeds=torch.zeros(1, 3, 31))
    with pytest.raises(ValueError, match="attention_mask"): m(torch.zeros(1, 3, dtype=torch.long), attention_mask=torch.ones(1, 4))

def test_bad_model_config():
    with pytest.raises(ValueError, match="kv_groups"): Thinker(small(kv_groups=3))
    with pytest.raises(ValueError, match="n_heads"): Thinker(small(d_model=30))
    with pytest.raises(ValueError, match="moe_top_k"): Thinker(small(use_moe=True, moe_top_k=9))

def test_config_rejects_unknown_key(tmp_path):
    f = tmp_path / "t.json"; f.write_text(json.dumps({"kind": "thinker", "d_modle": 3}))
    with pytest.raises(ValueError, match="d_modle"): load_config(f)
    f.write_text(json.dumps({"kind": "thinker", "n_layers": "four"}))
    with pytest.raises(ValueError, match="n_layers"): load_config(f)

def test_presets_load():
    for p in ("smoke", "laptop", "tiny"):
        c = load_config("thinker_tiny", preset=p)
        assert c.preset == p and c.save_dir.startswith("checkpoints/thinker_")
    tiny, laptop = load_config("thinker_tiny", preset="tiny"), load_config("thinker_tiny", preset="laptop")
    assert tiny.d_model == 256 and laptop.d_model == 128                        # narrower on a laptop (chapter 27's sweep)
    assert (laptop.n_layers, laptop.n_heads, laptop.kv_groups) == (tiny.n_layers, tiny.n_heads, tiny.kv_groups)   # same kind of model

# -- generation --------------------------------------------------------------------------------------------------
def test_generate_options():
    torch.manual_seed(0)
    m = Thinker(small()).eval()
    p = torch.randint(0, 320, (2, 4))
    greedy = generate(m, p, 10, temperature=0)
    assert torch.equal(generate(m, p, 10, temperature=0, use_cache=False), greedy)
    assert torch.equal(generate(m, p[0], 10, temperature=0), greedy[:1])               # 1-D prompt
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = generate(m, p, 10, temperature=1.0, top_k=5, top_p=0.9, generator=g1)
    assert torch.equal(a, generate(m, p, 10, temperature=1.0, top_k=5, top_p=0.9, generator=g2))
    seen = []
    generate(m, p[:1], 5, stream=seen.append)
    assert len(seen) == 5 and all(isinstance(t, int) for t in seen)
    eos = int(greedy[0, 2])
    out = generate(m, p[:1], 10, temperature=0, eos_id=eos)
    assert out.shape[1] <= 3 and out[0, -1].item() == eos
    assert generate(m, p, 0).shape == (2, 0)
    assert generate(m, p, 40, temperature=0).shape == (2, 40)                         # beyond ctx_len

@pytest.mark.parametrize("groups", [4, 2, 1])
def test_fast_decoder_float32_gives_generates_tokens(groups):
    torch.manual_seed(0)
    m = Thinker(small(kv_groups=groups)).eval()
    p = torch.randint(0, 320, (2, 5))
    assert torch.equal(FastDecoder(m).generate(p, 30, temperature=0), generate(m, p, 30, temperature=0))
    ids = torch.cat([p, generate(m, p, 30, temperature=0)], 1)
    with torch.no_grad(): assert torch.allclose(FastDecoder(m).forward(ids, last_only=False), m(ids), atol=1e-4)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)       # sampling, streaming, eos
    assert torch.equal(FastDecoder(m).generate(p, 9, temperature=1.0, top_k=20, generator=g1),
                       generate(m, p, 9, temperature=1.0, top_k=20, generator=g2))
    seen, eos = [], int(ids[0, 7])
    out = FastDecoder(m).generate(p[:1], 20, temperature=0, eos_id=eos, stream=seen.append)
    assert out[0, -1].item() == eos and len(seen) == out.shape[1] <= 3

@pytest.mark.parametrize("weights", ["bf16", "int8"])
def test_fast_decoder_smaller_weights_match_their_own_full_forward(weights):
    "bf16 and int8 weights change the numbers: token by token through the cache they equal the same path's full pass."
    torch.manual_seed(0)
    m = Thinker(small()).eval()
    fast = FastDecoder(m, weights, max_len=64)
    ids = torch.cat([torch.randint(0, 320, (2, 5)), fast.generate(torch.randint(0, 320, (2, 5)), 25, temperature=0)], 1)
    full = fast.forward(ids, last_only=False)
    steps = [fast.forward(ids[:, :5], last_only=False)] + [fast.forward(ids[:, t:t + 1], t) for t in range(5, ids.shape[1])]
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    with torch.no_grad(): assert (full - m(ids)).abs().max() < 0.05 * m(ids).abs().max()    # and stay near the model's

def test_fast_decoder_bad_input():
    m = Thinker(small())
    with pytest.raises(ValueError, match="weights"): FastDecoder(m, "int4")
    with pytest.raises(NotImplementedError, match="dense"): FastDecoder(Thinker(small(use_moe=True)))
    with pytest.raises(ValueError, match="max_len"): FastDecoder(m, max_len=8).generate(torch.zeros(1, 5, dtype=torch.long), 10)

def test_sample_next_filters():
    logits = torch.tensor([[0.0, 3.0, 2.9, -5.0]])
    g = torch.Generator().manual_seed(0)
    assert {sample_next(logits, top_k=2, generator=g).item() for _ in range(50)} <= {1, 2}
    assert {sample_next(logits, top_p=0.01, generator=g).item() for _ in range(20)} == {1}
    for bad in (dict(temperature=-1.0), dict(top_p=0.0), dict(top_p=1.5), dict(top_k=-2)):
        with pytest.raises(ValueError): sample_next(logits, **bad)

# -- data, metrics, checkpoints ----------------------------------------------------------------------------------
def test_packing_and_metrics(tok):
    ids = token_stream(tok, TEXT)
    ds = PackedText(ids, 16)
    assert len(ds) == (len(ids) - 1) // 16 and torch.equal(ds[1][:-1], ids[16:32].long())
    w = eval_windows(ids, 16, max_tokens=64)
    assert w.shape == (4, 17)
    chars = count_chars(tok, w)
    assert chars > 64                                                     # BPE tokens hold several characters
    r = text_metrics(Thinker(small()), w, chars)
    assert math.isclose(r["val_perplexity"], math.exp(r["loss"]), rel_tol=1e-6)
    assert math.isclose(r["val_nats_per_char"], r["loss"] * w[:, 1:].numel() / chars, rel_tol=1e-6)
    with pytest.raises(ValueError, match="too short"): eval_windows(ids[:5], 16)

def test_load_thinker_roundtrip(tok, tmp_path):
    cfg = small(vocab_size=tok.vocab_size, save_dir=str(tmp_path))
    m = Thinker(cfg)
    save_checkpoint(tmp_path / "final.pt", m, cfg)
    tok.save(tmp_path / "tokenizer.json")
    m2, tok2 = load_thinker(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    assert tok2.encode("Speak") == tok.encode("Speak") and not m2.training
    assert complete(m2, tok2, "Speak", 5, temperature=0) == complete(m, tok, "Speak", 5, temperature=0)

def test_load_thinker_bad_input(tok, tmp_path):
    with pytest.raises(FileNotFoundError): load_thinker(tmp_path)
    (tmp_path / "final.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError): load_thinker(tmp_path)
    cfg = small(vocab_size=tok.vocab_size)
    save_checkpoint(tmp_path / "final.pt", Thinker(cfg), cfg)
    with pytest.raises(FileNotFoundError, match="tokenizer"): load_thinker(tmp_path)
    TextTokenizer(train_tokenizer(TEXT, 300).tok).save(tmp_path / "tokenizer.json")
    with pytest.raises(CheckpointError, match="tokens"): load_thinker(tmp_path)
