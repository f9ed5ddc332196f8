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
