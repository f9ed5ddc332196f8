"Stage C (muomni.vision): bad input, checkpoints, classify, and a micro training run."
import dataclasses, json

import numpy as np
import pytest
import torch
from PIL import Image

from muomni.core import CheckpointError, count_parameters, load_config, save_checkpoint
from muomni import vision as V

SHAPES, COLOURS = ["circle", "square", "triangle"], ["red", "green", "blue"]

def small_cfg(tmp_path, **kw):
    kw = dict(img_size=32, patch_size=8, shapes=SHAPES, colours=COLOURS, save_dir=str(tmp_path / "ckpt"),
              data_dir=str(tmp_path / "data"), device="cpu") | kw
    return load_config("vision_tiny", preset="smoke", **kw)

def test_tiny_parameter_count_matches_book():
    enc = V.VisionEncoder(load_config("vision_tiny"))
    assert abs(count_parameters(enc) / 914e3 - 1) < 0.01
    assert enc.n_patches == 196

def test_presets_keep_the_architecture():
    tiny = load_config("vision_tiny")
    for preset in ("smoke", "laptop"):
        c = load_config("vision_tiny", preset=preset)
        assert (c.d_model, c.n_layers, c.n_heads, c.d_ff) == (tiny.d_model, tiny.n_layers, tiny.n_heads, tiny.d_ff)
        assert c.img_size % c.patch_size == 0 and c.save_dir.startswith("checkpoints/vision_")

def test_bad_config_values():
    with pytest.raises(ValueError, match="multiple"): V.VisionEncoder(load_config("vision_tiny", patch_size=15))
    with pytest.raises(ValueError, match="divide"): V.VisionEncoder(load_config("vision_tiny", n_heads=3))
    with pytest.raises(ValueError, match="img_sise"): load_config("vision_tiny", img_sise=3)
    with pytest.raises(ValueError, match="shapes"): V.VisionClassifier(load_config("vision_tiny"))

def test_encoder_outputs_and_bad_shapes(tmp_path):
    enc = V.VisionEncoder(small_cfg(tmp_path)).eval()
    cls, patches = enc(torch.zeros(2, 3, 32, 32))
    assert cls.shape == (2, 128) and patches.shape == (2, 16, 128)
    for bad in (torch.zeros(2, 3, 64, 64), torch.zeros(3, 32, 32), torch.zeros(2, 1, 32, 32)):
        with pytest.raises(ValueError, match="expects images"): enc(bad)
    att = enc.cls_attention(torch.zeros(2, 3, 32, 32))
    assert att.shape == (2, 4, 4) and torch.allclose(att.sum((1, 2)), torch.ones(2), atol=1e-5)

@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1"])
def test_open_image_any_mode(mode):
    img = Image.new(mode, (17, 40))
    assert V.open_image(img).mode == "RGB"
    x = V.images_to_tensor(img, 32)
    assert x.shape == (1, 3, 32, 32) and x.dtype == torch.uint8

def test_open_image_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such"): V.open_image(tmp_path / "no_such.png")
    bad = tmp_path / "truncated.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    with pytest.raises(ValueError, match="truncated.png"): V.open_image(bad)
    with pytest.raises(TypeError, match="classify takes"): V.open_image(3.5)
    with pytest.raises(ValueError, match="empty"): V.open_image(np.zeros((0, 5)))
    with pytest.raises(ValueError): V.open_image(np.zeros((2, 2, 2, 2)))

def test_arrays_and_tensors_are_images():
    for im in (np.random.rand(10, 12), np.random.randint(0, 255, (8, 8, 3), dtype=np.uint8),
               np.zeros((5, 5, 1)), torch.zeros(3, 9, 9, dtype=torch.uint8)):
        assert V.open_image(im).mode == "RGB"

def test_masked_ce_all_ignored_is_zero():
    logits = torch.randn(4, 3, requires_grad=True)
    loss = V.masked_ce(logits, torch.full((4,), V.IGNORE))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()

def test_vary_digit_is_deterministic_and_keeps_ink():
    digit = Image.fromarray(np.pad(np.full((20, 6), 255, np.uint8), 10))
    a = V.vary_digit(digit, np.random.default_rng(3), 48)
    b = V.vary_digit(digit, np.random.default_rng(3), 48)
    assert a.size == (48, 48) and np.array_equal(np.asarray(a), np.asarray(b))
    assert V.ink_mask(a).max() > 0.5

def test_checkpoint_roundtrip_and_classify(tmp_path):
    cfg = small_cfg(tmp_path)
    model = V.VisionClassifier(cfg).eval()
    path = save_checkpoint(tmp_path / "ckpt" / "final.pt", model, cfg)
    loaded = V.load_vision(tmp_path / "ckpt")
    pics = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("L", (64, 64), 30)]
    labels = V.classify(pics, loaded)
    assert labels == model.classify(pics)
    for lab in labels:
        assert lab == V.NOTHING or lab.startswith("digit ") or (lab.split()[0] in COLOURS and lab.split()[1] in SHAPES)
    assert V.classify(pics[0], str(path)) == labels[0]
    enc = V.VisionEncoder.from_checkpoint(path)
    assert isinstance(enc, V.VisionEncoder) and enc.img_size == 32

def test_load_vision_bad_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError): V.load_vision(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="final.pt"): V.load_vision(tmp_path / "empty")
    junk = tmp_path / "junk.pt"; junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError): V.load_vision(junk)
    other = save_checkpoint(tmp_path / "other.pt", torch.nn.Linear(2, 2), dict(kind="thinker"))
    with pytest.raises(ValueError, match="not a Stage C"): V.load_vision(other)
    cfg = small_cfg(tmp_path)
    wrong = save_checkpoint(tmp_path / "wrong.pt", V.VisionClassifier(cfg), cfg)
    state = torch.load(wrong, weights_only=True)
    state["model"]["encoder.pos_embed"] = torch.zeros(1, 5, 128)
    torch.save(state, wrong)
    with pytest.raises(CheckpointError, match="pos_embed"): V.load_vision(wrong)

def test_micro_training_run(tmp_path):
    cfg = small_cfg(tmp_path, max_steps=3, val_freq=0, n_train_shapes=24, n_val_shapes=8, n_heldout_combo=8, n_tune_shapes=8,
                    shapes=[], colours=[])
    data = V.vision_data(cfg)
    assert cfg.shapes and cfg.colours
    for k in ("train", "tune_shapes", "tune_digits", "tune_other", "test_shapes", "test_combo", "test_digits", "test_other",
              "test_plain", "test_variant", "test_variant_digits"): assert len(data[k]) > 0, k
    assert data["train"].labels[:, 0].unique().tolist() == [0, 1, 2]
    metrics = V.train_vision(cfg, data, plot=False)
    for k in ("accuracy", "digits_accuracy", "heldout_combo_accuracy", "variant_accuracy", "variant_digits_accuracy",
              "plain_background_accuracy", "other_accuracy", "preset", "device", "train_time_s"): assert k in metrics, k
    saved = json.loads((tmp_path / "ckpt" / "metrics.json").read_text())
    assert saved["accuracy"] == metrics["accuracy"]
    assert (tmp_path / "data" / "vision").exists()
    label = V.classify(Image.new("RGB", (10, 10)), tmp_path / "ckpt")
    assert label == V.NOTHING or label.startswith("digit ") or (label.split()[0] in cfg.colours and label.split()[1] in cfg.shapes)

def test_bench_reports_images_per_second(tmp_path):
    from conftest import check_bench, linear_weights
    cfg = small_cfg(tmp_path, batch_size=4)
    out = V.bench(cfg, steps=1, warmup=1)
    enc = V.VisionEncoder(cfg)
    check_bench(out, "train_images_per_s", 4, 6 * linear_weights(enc.blocks) * 4 * (enc.n_patches + 1))
    assert (out["batch_size"], out["img_size"], out["encoder_parameters"]) == (4, 32, count_parameters(enc))
    assert out["infer_images_per_s"] > 0                                  # a speed: not asserted beyond its sign


def test_classify_says_nothing_for_the_other_domain(tmp_path):
    model = V.VisionClassifier(small_cfg(tmp_path)).eval()
    with torch.no_grad():
        model.heads["domain"].weight.zero_(); model.heads["domain"].bias.copy_(torch.tensor([0.0, 0.0, 5.0]))
    assert model.classify(Image.new("RGB", (20, 20), "white")) == V.NOTHING == "nothing recognisable"
    with torch.no_grad(): model.heads["domain"].bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    assert model.classify(Image.new("RGB", (20, 20), "white")).startswith("digit ")


def test_eval_reports_stress_sets_and_scores_the_worst_watched(tmp_path):
    cfg = small_cfg(tmp_path)
    model = V.VisionClassifier(cfg).eval()
    img = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    I = V.IGNORE
    shapes = V.VisionSet(img, torch.tensor([[0, 1, 2, I, I, I]] * 4), ["blue square"] * 4)
    other = V.VisionSet(img, torch.tensor([[2, I, I, I, I, I]] * 4), [V.NOTHING] * 4)
    digits = V.VisionSet(img, torch.tensor([[1, I, I, 3, I, I]] * 4), ["digit 3"] * 4)
    data = dict(test_shapes=shapes, test_variant=shapes, test_plain=shapes, test_other=other, test_digits=digits,
                test_variant_digits=digits)
    out = V.vision_eval_fn(data, "test")(model)
    for k in ("accuracy", "variant_accuracy", "variant_shape_accuracy", "variant_colour_accuracy", "plain_background_accuracy",
              "other_accuracy", "digits_accuracy", "variant_digits_accuracy"): assert 0 <= out[k] <= 1, k
    assert out["score"] == min(out["accuracy"], out["digits_accuracy"], out["other_accuracy"])
    assert "heldout_combo_accuracy" not in out                        # sets that are missing are not reported


def test_vision_data_keeps_seeds_apart_and_caches(tmp_path):
    cfg = small_cfg(tmp_path, shapes=[], colours=[], n_train_shapes=8, n_val_shapes=4, n_heldout_combo=4, n_tune_shapes=4,
                    n_train_other=4, n_tune_other=2, n_test_other=2, n_plain=2, n_variant=4, max_digits=5, digit_renderings=2)
    data = V.vision_data(cfg)
    assert len(data["train"]) == 8 + 5 * 3 + 4 and V.count_samples(cfg) == len(data["train"])
    rows = lambda k: {bytes(x.numpy()) for x in data[k].images}
    train = rows("train")
    for k in ("tune_shapes", "test_shapes", "test_plain", "test_variant", "test_other", "tune_other", "test_variant_digits"):
        assert not rows(k) & train, k
    again = V.vision_data(cfg)                                          # read back from the cache
    assert torch.equal(again["test_variant"].images, data["test_variant"].images) and V.vision_data.render_s == 0.0
