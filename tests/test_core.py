"Engine tests: configs, checkpoints, resume, accumulation, bad input."
import dataclasses, json, os, stat
from pathlib import Path

import pytest, torch
from torch import nn

from muomni.core import (CheckpointError, StepBatchSampler, Trainer, TrainingPaused, demo_problem, load_checkpoint,
                         load_config, save_checkpoint, train_demo, unwrap)

def demo_cfg(tmp_path, **kw):
    base = dict(kind="demo", save_dir=str(tmp_path / "run"), lr=1e-2, warmup_steps=2, max_steps=30, val_freq=10,
                print_freq=5, checkpoint_freq=10, batch_size=16)
    return load_config({**base, **kw})

def flat(model): return torch.cat([p.detach().flatten() for p in unwrap(model).parameters()])

def test_resume_reproduces_uninterrupted_run(tmp_path):
    straight, _ = train_demo(demo_cfg(tmp_path / "a"))
    half, _ = train_demo(demo_cfg(tmp_path / "b"), until=13)          # stop off the checkpoint grid
    assert half.step == 13 and (tmp_path / "b/run/last.pt").exists()
    resumed, metrics = train_demo(demo_cfg(tmp_path / "b", resume=True))
    assert resumed.step == 30
    torch.testing.assert_close(flat(resumed.model), flat(straight.model), rtol=0, atol=1e-6)
    assert "loss" in metrics

def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train_demo(demo_cfg(tmp_path, resume=True))

def test_stop_after_pauses_and_resume_finishes_the_same_run(tmp_path):
    straight, _ = train_demo(demo_cfg(tmp_path / "a"))
    with pytest.raises(TrainingPaused, match="resume=True"):
        train_demo(demo_cfg(tmp_path / "b", stop_after=17))
    assert load_checkpoint(tmp_path / "b/run/last.pt")["step"] == 17 and not (tmp_path / "b/run/final.pt").exists()
    resumed, metrics = train_demo(demo_cfg(tmp_path / "b", resume=True))
    assert resumed.step == 30 and "loss" in metrics
    torch.testing.assert_close(flat(resumed.model), flat(straight.model), rtol=0, atol=1e-6)

def test_accumulation_matches_large_batch(tmp_path):
    def step(bs, accum):
        cfg = demo_cfg(tmp_path / f"{bs}", batch_size=bs, gradient_accumulation_steps=accum, max_steps=1,
                       warmup_steps=0, max_grad_norm=0.0, val_freq=0)
        model, train, loss_fn, _ = demo_problem(cfg)
        before = flat(model).clone()
        t = Trainer(model, cfg, train, loss_fn, plot=False)
        rows = StepBatchSampler(len(train), 32, cfg.seed).batch(0)
        it = iter([torch.utils.data.default_collate([train[j] for j in rows[i:i + bs]]) for i in range(0, 32, bs)])
        t.train_step(it)
        return before, flat(t.model)
    before, big = step(32, 1)
    _, small = step(8, 4)
    assert not torch.allclose(before, big)                 # the step changed the weights
    torch.testing.assert_close(small, big, rtol=0, atol=1e-6)

def test_time_schedule_anneals_by_the_clock(tmp_path):
    cfg = demo_cfg(tmp_path, lr_schedule="time", max_time_s=100.0, max_steps=1000, warmup_steps=2, min_lr_ratio=0.1)
    model, train, loss_fn, _ = demo_problem(cfg)
    t = Trainer(model, cfg, train, loss_fn, plot=False)
    assert t.lr_factor(0) == 0.5                              # warmup goes by steps
    t.train_time_s = 50.0                                    # half the budget spent after 10 steps: mid-cosine
    assert abs(t.lr_factor(10) - 0.55) < 1e-9
    t.train_time_s = 100.0
    assert abs(t.lr_factor(10) - 0.1) < 1e-9                  # the budget is spent: at the floor, whatever the step
    steps = Trainer(model, demo_cfg(tmp_path / "s", max_time_s=100.0, max_steps=1000, warmup_steps=2), train, loss_fn, plot=False)
    steps.train_time_s = 100.0
    assert steps.lr_factor(10) > 0.99                         # a step schedule ignores the clock
    with pytest.raises(ValueError, match="max_time_s"): Trainer(model, demo_cfg(tmp_path / "x", lr_schedule="time"), train, loss_fn, plot=False)
    with pytest.raises(ValueError, match="lr_schedule"): Trainer(model, demo_cfg(tmp_path / "y", lr_schedule="clock"), train, loss_fn, plot=False)
    with pytest.raises(ValueError, match="parallel"): Trainer(model, demo_cfg(tmp_path / "z", parallel="zero3"), train, loss_fn, plot=False)

def test_length_bucketed_batches_in_the_trainer(tmp_path):
    cfg = demo_cfg(tmp_path, max_steps=3, val_freq=0)
    model, train, loss_fn, _ = demo_problem(cfg)
    lengths = torch.randint(1, 100, (len(train),)).tolist()
    t = Trainer(model, cfg, train, loss_fn, plot=False, lengths=lengths)
    spread = lambda b: max(lengths[i] for i in b) - min(lengths[i] for i in b)
    plain = StepBatchSampler(len(train), cfg.batch_size, cfg.seed)
    assert sum(spread(t.sampler().batch(i)) for i in range(8)) < sum(spread(plain.batch(i)) for i in range(8))
    with pytest.raises(ValueError, match="lengths has 3 entries"): Trainer(model, cfg, train, loss_fn, plot=False, lengths=[1, 2, 3])

def test_trainer_writes_history_and_checkpoints(tmp_path):
    t, metrics = train_demo(demo_cfg(tmp_path))
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"last.pt", "best.pt", "final.pt", "history.jsonl", "config.json", "training.png"} <= files
    lines = [json.loads(l) for l in (tmp_path / "run/history.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines if "val" in l] == [10, 20, 30]
    first, last = lines[0]["loss"], [l for l in lines if "loss" in l][-1]["loss"]
    assert last < first

def test_keyboard_interrupt_saves_checkpoint(tmp_path):
    cfg = demo_cfg(tmp_path, checkpoint_freq=1000, val_freq=0)
    model, train, loss_fn, eval_fn = demo_problem(cfg)
    calls = {"n": 0}
    def interrupting_loss(m, b):
        calls["n"] += 1
        if calls["n"] == 8: raise KeyboardInterrupt
        return loss_fn(m, b)
    t = Trainer(model, cfg, train, interrupting_loss, eval_fn, plot=False)
    with pytest.raises(KeyboardInterrupt): t.fit()
    assert load_checkpoint(tmp_path / "run/last.pt")["step"] == 7

@pytest.mark.parametrize("values,message", [
    (dict(n_layrs=3), "unknown config key(s) ['n_layrs']"),
    (dict(lr="fast"), "'lr' must be float"),
    (dict(max_steps=2.5), "'max_steps' must be int"),
    (dict(resume="yes"), "'resume' must be bool"),
])
def test_bad_config_values(tmp_path, values, message):
    f = tmp_path / "cfg.json"
    f.write_text(json.dumps(dict(kind="demo", **values)))
    with pytest.raises(ValueError) as e: load_config(f)
    assert message in str(e.value) and "cfg.json" in str(e.value)

def test_bad_config_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"): load_config(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"): load_config(tmp_path / "broken.json")
    (tmp_path / "nokind.json").write_text("{}")
    with pytest.raises(ValueError, match="missing 'kind'"): load_config(tmp_path / "nokind.json")
    with pytest.raises(ValueError, match="unknown preset 'huge'"): load_config({"kind": "demo"}, preset="huge")
    with pytest.raises(ValueError, match="no 'laptop' preset"): load_config({"kind": "demo"}, preset="laptop")

def test_checkpoint_from_other_config_names_shapes(tmp_path):
    p = save_checkpoint(tmp_path / "c.pt", nn.Sequential(nn.Linear(1, 8), nn.Linear(8, 1)), demo_cfg(tmp_path, hidden=8))
    with pytest.raises(CheckpointError) as e: load_checkpoint(p, nn.Sequential(nn.Linear(1, 16), nn.Linear(16, 1)))
    assert "0.weight: checkpoint (8, 1) vs model (16, 1)" in str(e.value) and "kind='demo'" in str(e.value)

def test_corrupt_and_truncated_checkpoints(tmp_path):
    p = save_checkpoint(tmp_path / "c.pt", nn.Linear(2, 2))
    (tmp_path / "t.pt").write_bytes(p.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="t.pt is not a readable checkpoint"): load_checkpoint(tmp_path / "t.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a muomni checkpoint"): load_checkpoint(tmp_path / "other.pt")

def test_checkpoints_refuse_pickled_code(tmp_path):
    import pickle
    class Evil:
        def __reduce__(self): return (os.system, ("echo pwned",))
    torch.save({"model": {}, "x": Evil()}, tmp_path / "evil.pt", pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(CheckpointError): load_checkpoint(tmp_path / "evil.pt")

@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_save_dir(tmp_path):
    ro = tmp_path / "ro"; ro.mkdir(); ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    with pytest.raises(PermissionError, match="not writable"): train_demo(demo_cfg(tmp_path, save_dir=str(ro / "run")))

def test_unwritable_save_dir_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(PermissionError, match="cannot create folder"):
        train_demo(demo_cfg(tmp_path, save_dir=str(tmp_path / "afile" / "run")))


def test_shown_path_hides_the_home_folder(tmp_path, monkeypatch):
    from muomni.core import shown_path, project_root
    inside = project_root() / "checkpoints" / "audio_encoder_laptop" / "final.pt"
    assert shown_path(inside) == "checkpoints/audio_encoder_laptop/final.pt"
    assert shown_path(tmp_path / "x.pt") == str(tmp_path / "x.pt")      # outside the home folder: shown whole
