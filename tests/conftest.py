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
