"""Distributed runs on the CPU (gloo) under torchrun, checked against the 1-process run at the same global batch.
Tolerance 1e-5: the all-reduce (or FSDP's reduce-scatter) averages the two half-batch gradients in another order than
one full-batch mean."""
import os, subprocess, sys
from pathlib import Path

import pytest
import torch

from muomni.core import demo_problem, load_checkpoint, load_config

HERE = Path(__file__).parent

def run(save, nproc, steps=12, *overrides, env=None, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),   # a free port
           str(HERE / "ddp_demo.py"), str(save), str(steps), *overrides]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r

def assert_same(a: dict, b: dict, atol=1e-5):
    assert a.keys() == b.keys()
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol)

@pytest.fixture(scope="module")
def single(tmp_path_factory):
    save = tmp_path_factory.mktemp("one") / "run"
    run(save, 1)
    return load_checkpoint(save / "final.pt")

def test_two_processes_match_one(tmp_path, single):
    run(tmp_path / "ddp", 2)
    two = load_checkpoint(tmp_path / "ddp" / "final.pt")
    assert single["step"] == two["step"] == 12
    assert_same(two["model"], single["model"])
    # and training moved the weights: the comparison is not between two untouched initialisations
    init = demo_problem(load_config(dict(kind="demo", dropout=0.0)))[0].state_dict()
    assert all(not torch.allclose(init[k], single["model"][k]) for k in init)

def test_fsdp_matches_one_process_and_writes_whole_checkpoints(tmp_path, single):
    run(tmp_path / "fsdp", 2, 12, "parallel=fsdp")
    two = load_checkpoint(tmp_path / "fsdp" / "final.pt")
    assert two["step"] == 12 and two["config"]["parallel"] == "fsdp"
    assert_same(two["model"], single["model"])               # plain tensors, full shapes: loads into an unsharded model
    plain = demo_problem(load_config(dict(kind="demo", dropout=0.0)))[0]
    load_checkpoint(tmp_path / "fsdp" / "final.pt", plain)
    assert set(two["optimizer"]["state"]) and "best.pt" in {p.name for p in (tmp_path / "fsdp").iterdir()}

def test_fsdp_resume_continues_the_run(tmp_path, single):
    save = tmp_path / "fsdp_resume"
    run(save, 2, 12, "parallel=fsdp", "until=7")              # stops after step 7 (last.pt at step 7)
    assert load_checkpoint(save / "last.pt")["step"] == 7
    run(save, 2, 12, "parallel=fsdp", "resume=true")
    assert_same(load_checkpoint(save / "final.pt")["model"], single["model"])

def test_time_budget_stops_every_rank_at_the_same_step(tmp_path):
    "Rank 1 runs slower; with one shared clock both ranks anneal alike and leave the loop together (no hang)."
    save = tmp_path / "clock"
    run(save, 2, 100000, "lr_schedule=time", "max_time_s=2", "val_freq=0", "checkpoint_freq=0",
        env=dict(SLOW_RANK="1", SLOW_S="0.01"), timeout=120)
    r0, r1 = torch.load(save / "rank0.pt", weights_only=True), torch.load(save / "rank1.pt", weights_only=True)
    assert r0["step"] == r1["step"] < 100000
    assert_same(r0["model"], r1["model"], atol=0)             # the same learning rate at every step on both ranks
