#!/usr/bin/env python3
"""Check that the generated files agree with the notebooks: muomni/ (nbdev-export), README.md (nbs/index.ipynb) and
clean notebooks (nbdev-clean), and the README's results table (results/laptop.json). Works on a temporary copy, so
it never changes the tree. `--write-readme` renders the results table into nbs/index.ipynb and README.md from it."""
import filecmp, json, re, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
BLOCK = re.compile(r"<!-- results:begin -->.*?<!-- results:end -->", re.S)

def results_block() -> str:
    "The README's results and parameter tables, rendered from the committed reference results (results/laptop.json)."
    from muomni.pipeline import parameter_table, reference_table
    body = (reference_table("laptop", ROOT / "results" / "laptop.json") if (ROOT / "results" / "laptop.json").exists()
            else "No reference run is committed yet: `make pipeline` writes `results/laptop.json`.\n")
    body += ("\nParameter counts with the book's tiny configs (`muomni.pipeline.parameter_table()`, counted, not trained):\n\n"
             + parameter_table("tiny")[1].strip() + "\n")
    return f"<!-- results:begin -->\n{body}<!-- results:end -->"

def write_results_block(index_nb: Path) -> None:
    "Put the current results table between the markers of the index notebook's markdown (the README's source)."
    nb = json.loads(index_nb.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and BLOCK.search(text):
            cell["source"] = BLOCK.sub(lambda m: results_block(), text).splitlines(keepends=True)
    index_nb.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

def render_readme(index_nb: Path) -> str:
    import nbformat
    from nbconvert import MarkdownExporter
    nb = nbformat.read(index_nb, as_version=4)
    nb.cells = [c for c in nb.cells if c.cell_type == "markdown"]   # the README is the page's prose
    body, _ = MarkdownExporter().from_notebook_node(nb)
    return body.strip() + "\n"

def main() -> int:
    if "--write-readme" in sys.argv:
        write_results_block(ROOT / "nbs/index.ipynb")
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
    found = BLOCK.search(readme.read_text(encoding="utf-8")) if readme.exists() else None
    if found is None: problems.append("README.md has no results block (<!-- results:begin --> ... <!-- results:end -->)")
    elif found.group(0) != results_block():
        problems.append("README.md's results table differs from results/laptop.json; run `make readme` and commit")
    for p in problems: print("out of sync:", p, file=sys.stderr)
    if not problems: print("library, notebooks and README are in sync")
    return 1 if problems else 0

if __name__ == "__main__": sys.exit(main())
