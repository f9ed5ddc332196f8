"""A 2-process DistributedDataParallel run (gloo, CPU) follows the 1-process run at the same global batch.
Tolerance 1e-5: the all-reduce averages the two half-batch gradients in another order than one full-batch mean."""
import subprocess, sys
from pathlib import Path

import torch

from muomni.core import demo_problem, load_checkpoint, load_config

HERE = Path(__file__).parent

def run(tmp_path, nproc):
    save = tmp_path / f"ddp{nproc}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(29500 + nproc),
           str(HERE / "ddp_demo.py"), str(save), "12"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return load_checkpoint(save / "final.pt")

def test_two_processes_match_one(tmp_path):
    one, two = run(tmp_path, 1), run(tmp_path, 2)
    assert one["step"] == two["step"] == 12
    for k in one["model"]:
        torch.testing.assert_close(two["model"][k], one["model"][k], rtol=0, atol=1e-5)
    # and training moved the weights: the comparison is not between two untouched initialisations
    init = demo_problem(load_config(dict(kind="demo", dropout=0.0)))[0].state_dict()
    assert all(not torch.allclose(init[k], one["model"][k]) for k in init)
