#!/usr/bin/env python3
"""Check that the generated files agree with the notebooks: muomni/ (nbdev-export), README.md (nbs/index.ipynb) and
clean notebooks (nbdev-clean). Works on a temporary copy, so it never changes the tree. `--write-readme` renders
README.md from nbs/index.ipynb instead."""
import filecmp, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def render_readme(index_nb: Path) -> str:
    import nbformat
    from nbconvert import MarkdownExporter
    nb = nbformat.read(index_nb, as_version=4)
    nb.cells = [c for c in nb.cells if c.cell_type == "markdown"]   # the README is the page's prose
    body, _ = MarkdownExporter().from_notebook_node(nb)
    return body.strip() + "\n"

def main() -> int:
    if "--write-readme" in sys.argv:
        (ROOT / "README.md").write_text(render_readme(ROOT / "nbs/index.ipynb"), encoding="utf-8")
        print("README.md rendered from nbs/index.ipynb"); return 0
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in ("pyproject.toml", "nbs", "muomni"): 
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp / name)
        for cmd in ("nbdev-export", "nbdev-clean"):
            r = subprocess.run([str(BIN / cmd)], cwd=tmp, capture_output=True, text=True)
            if r.returncode: problems.append(f"{cmd} failed:\n{r.stdout}{r.stderr}")
        for folder, what, fix in (("muomni", "library", "nbdev-export"), ("nbs", "notebook", "nbdev-clean")):
            for f in sorted((tmp / folder).rglob("*.py" if folder == "muomni" else "*.ipynb")):
                if "__pycache__" in f.parts or ".ipynb_checkpoints" in f.parts: continue
                orig = ROOT / f.relative_to(tmp)
                if not orig.exists() or not filecmp.cmp(f, orig, shallow=False):
                    problems.append(f"{orig.relative_to(ROOT)}: {what} out of date; run .venv/bin/{fix} and commit")
    readme = ROOT / "README.md"
    if not readme.exists() or readme.read_text(encoding="utf-8") != render_readme(ROOT / "nbs/index.ipynb"):
        problems.append("README.md differs from nbs/index.ipynb; run `make readme` and commit")
    for p in problems: print("out of sync:", p, file=sys.stderr)
    if not problems: print("library, notebooks and README are in sync")
    return 1 if problems else 0

if __name__ == "__main__": sys.exit(main())
