"""Scaled presets: every medium/large config loads, its models build on the meta device (no memory), the Thinker has
the book's shape at each scale, the other components and Stage E's projectors follow it."""
import dataclasses, json
from pathlib import Path

import pytest
import torch

from muomni.core import count_parameters, load_config
from muomni.pipeline import BOOK_PARAMS, build_model, memory_estimate, parameter_table, scaled_config

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("thinker", "audio_enc", "vision", "talker", "omni_sft")
KINDS = ("thinker", "audio", "vision", "talker")
# the book's scaling section (chapter 26): Thinker d_model, n_layers, n_heads, d_ff
BOOK_THINKER = {"tiny": (256, 4, 4, 1024), "medium": (512, 8, 8, 2048), "large": (768, 16, 12, 3072)}
WIDTH, DEPTH = {"medium": 2, "large": 3}, {"medium": 2, "large": 4}

def thinker_params(c) -> int:
    "The Thinker's parameter count from its shape alone (untied embedding and head, GQA, SwiGLU, RMSNorm)."
    head = c.d_model // c.n_heads
    attn = 2 * c.d_model * c.d_model + 2 * c.d_model * c.kv_groups * head
    block = attn + 3 * c.d_model * c.d_ff + 2 * c.d_model
    return 2 * c.vocab_size * c.d_model + c.n_layers * block + c.d_model

@pytest.mark.parametrize("scale", ["medium", "large"])
@pytest.mark.parametrize("name", NAMES)
def test_scaled_config_loads(name, scale):
    f = ROOT / "configs" / f"{name}_{scale}.json"
    cfg = load_config(f)
    assert load_config(f"{name}_tiny", preset=scale).save_dir == cfg.save_dir     # the preset picks the scaled file
    assert cfg.save_dir.startswith("checkpoints/") and scale in cfg.save_dir
    assert load_config(f, preset="smoke").save_dir != cfg.save_dir                # smoke runs still work from it
    tiny = load_config(f"{name}_tiny")
    assert cfg.batch_size * cfg.gradient_accumulation_steps == tiny.batch_size * tiny.gradient_accumulation_steps
    assert cfg.lr < tiny.lr

@pytest.mark.parametrize("scale", ["tiny", "medium", "large", "xl"])
@pytest.mark.parametrize("kind", KINDS)
def test_models_build_on_meta(kind, scale):
    m = build_model(scaled_config(kind, scale))
    assert {p.device.type for p in m.parameters()} == {"meta"}
    assert count_parameters(m) > 0

@pytest.mark.parametrize("scale", ["tiny", "medium", "large"])
def test_thinker_matches_the_books_table(scale):
    c = scaled_config("thinker", scale)
    assert (c.d_model, c.n_layers, c.n_heads, c.d_ff) == BOOK_THINKER[scale]
    assert c.vocab_size == 32000 and not c.use_moe
    assert count_parameters(build_model(c)) == thinker_params(c)

def test_xl_is_the_books_mixture_of_experts_row():
    c = scaled_config("thinker", "xl")
    assert (c.d_model, c.n_layers, c.n_heads, c.use_moe, c.moe_top_k) == (1024, 32, 16, True, 2)
    assert c.grad_checkpointing and c.gradient_accumulation_steps > 1 and c.parallel == "fsdp"   # sharded under torchrun
    experts = c.n_layers * ((c.n_experts - 1) * 3 * c.d_model * c.d_ff + c.n_experts * c.d_model)   # extra experts + routers
    assert count_parameters(build_model(c)) == thinker_params(dataclasses.replace(c, use_moe=False)) + experts
    for kind in ("audio", "vision", "talker"):                    # the encoders and the Talker stop at large
        assert scaled_config(kind, "xl").save_dir == scaled_config(kind, "large").save_dir
    assert scaled_config("omni", "xl").preset == "xl"

@pytest.mark.parametrize("scale", ["medium", "large"])
@pytest.mark.parametrize("kind", ["audio", "vision", "talker"])
def test_components_scale_like_the_thinker(kind, scale):
    tiny, big = scaled_config(kind, "tiny"), scaled_config(kind, scale)
    assert big.d_model == WIDTH[scale] * tiny.d_model and big.d_ff == WIDTH[scale] * tiny.d_ff
    assert big.n_layers == DEPTH[scale] * tiny.n_layers
    assert big.d_model // big.n_heads == tiny.d_model // tiny.n_heads            # same head width
    assert count_parameters(build_model(big)) > WIDTH[scale] ** 2 * count_parameters(build_model(tiny)) * 0.9

@pytest.mark.parametrize("scale", ["tiny", "medium", "large", "xl"])
def test_projectors_follow_the_thinker(scale):
    rows = {r["component"]: r for r in parameter_table(scale)[0]}
    d_t, d_v, d_a = (scaled_config(k, scale).d_model for k in ("thinker", "vision", "audio"))
    assert scaled_config("omni", scale).projector == "linear" and scaled_config("omni", scale).audio_features == "mean"
    for name, d_in in (("vision -> Thinker projector", d_v), ("audio -> Thinker projector", d_a)):
        assert rows[name]["config"] == f"linear {d_in} -> {d_t}"
        assert rows[name]["measured"] == d_in * d_t + d_t + 2 * d_t            # Linear + LayerNorm

@pytest.mark.parametrize("scale", ["medium", "large"])
def test_scaled_omni_joins_scaled_stages(scale):
    from muomni.omni import stage_dir
    cfg = scaled_config("omni", scale)
    assert cfg.preset == scale
    for part, stage in (("thinker", "thinker"), ("audio_encoder", "audio_enc"), ("vision_encoder", "vision"), ("talker", "talker")):
        want = Path(load_config(f"{stage}_tiny", preset=scale).save_dir).name
        assert stage_dir(cfg, part).name == want and scale in want

def test_tiny_counts_within_one_percent_of_the_book():
    rows, md = parameter_table("tiny")
    checked = {r["component"]: r for r in rows if r["book"] is not None}
    assert set(checked) == set(BOOK_PARAMS)
    for r in checked.values(): assert abs(r["measured"] / r["book"] - 1) < 0.01, r
    assert "| Thinker |" in md and "20,318,464" in md

def test_memory_formula():
    c = scaled_config("thinker", "medium")
    e = memory_estimate(c, batch_size=32, ctx_len=512)
    assert e["params"] == thinker_params(c)
    assert e["total"] == 4 * 4 * e["params"] + 32 * 512 * c.d_model * 4
    assert e["logits_bytes"] == 32 * 512 * 32000 * 4
    with pytest.raises(ValueError, match="ctx_len"): memory_estimate(scaled_config("vision"))
