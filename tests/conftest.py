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
