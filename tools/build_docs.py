#!/usr/bin/env python3
"""Build the static site from the executed notebooks of a pipeline run (`make docs`; RUN=runs/laptop by default):

    .venv/bin/python tools/build_docs.py [--run runs/laptop] [--out _site] [--no-execute]

Pages, in this order: README.md as the front page, the run's results table (results.md), one page per chapter in book
order (chapters 26 to 33, then the reference chapters 00 to 02), each with its figures, audio players, image grids
and tables as the run saved them. The pipeline executes 01 and 27-31; a chapter the run lacks is executed here with
papermill at the run's preset, once (kept in <out>/executed/ until its notebook changes), or with --no-execute shown
as committed, without outputs. Sphinx with MyST-NB and sphinx-book-theme (docs/conf.py) writes <out>/html, offline.
"""
import argparse, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("<p><em>An interactive ipywidgets panel: it works in Jupyter, with the notebook running "
               "(<code>.venv/bin/jupyter lab nbs/</code>); a static page cannot run it.</em></p>")
HIDDEN = {"hide", "default_exp"}                      # nbdev cells that are not for the reader

def book_order(nbs: Path = NBS) -> list[str]:
    "The chapter notebooks: the book's chapters (26 on) first, then the reference chapters (00-02)."
    names = sorted(p.name for p in nbs.glob("[0-9][0-9]_*.ipynb"))
    return [n for n in names if int(n[:2]) >= 26] + [n for n in names if int(n[:2]) < 26]

def run_preset(run: Path) -> str:
    "The preset a run used: its results.json, else the parameters papermill injected into one of its notebooks."
    results = run / "results.json"
    if results.exists(): return json.loads(results.read_text())["preset"]
    for nb in sorted(run.glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
                m = re.search(r"""^preset = ['"](\w+)['"]""", "".join(cell["source"]), re.M)
                if m: return m.group(1)
    raise SystemExit(f"{run}: cannot tell the run's preset (no results.json, no papermill parameters in its notebooks)")

def execute(name: str, preset: str, dest: Path) -> Path:
    "Run nbs/<name> with papermill at `preset` into `dest` (the pipeline chapter runs only its data stage)."
    import papermill as pm
    params = dict(preset=preset)
    if name.startswith("26_"): params.update(stages="data", out_dir=str(dest.parent / "pipeline"))
    part = dest.with_name(dest.stem + ".part.ipynb")
    print(f"[docs] executing {name} (preset {preset}) ...", flush=True)
    t0 = time.time()
    pm.execute_notebook(str(NBS / name), str(part), parameters=params, cwd=str(NBS), kernel_name="python3",
                        progress_bar=False)
    part.replace(dest)
    print(f"[docs] {name} done in {time.time() - t0:.0f}s", flush=True)
    return dest

def chapter_source(name: str, run: Path, out: Path, preset: str, run_missing: bool) -> tuple[Path, str | None]:
    "(the notebook a chapter's page shows, a note for the reader when it is not the run's own)."
    if (run / name).exists(): return run / name, None
    if not run_missing:
        return NBS / name, "This chapter was not executed in this run, so the page shows its code without outputs."
    dest = out / "executed" / preset / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists() or dest.stat().st_mtime < (NBS / name).stat().st_mtime: execute(name, preset, dest)
    note = f"The pipeline does not run this chapter; it was executed for this site with the run's preset ({preset})."
    if name.startswith("26_"): note += " Its pipeline cell ran the data stage only; the Results page has the whole run."
    return dest, note

def page(nb_path: Path, note: str | None):
    "The notebook as a page: nbdev's directives and hidden cells out, widgets replaced by a note, `note` under the title."
    import nbformat
    nb = nbformat.read(nb_path, as_version=4)
    nb.metadata.pop("widgets", None)                  # widget state: a static page has no kernel to run it
    for cell in nb.cells:
        if cell.cell_type != "code": continue
        lines = cell.source.splitlines()
        directives = {l[2:].strip().split()[0] for l in lines if l.startswith("#|") and l[2:].strip()}
        if directives & HIDDEN: cell.metadata.setdefault("tags", []).append("remove-cell")
        cell.source = "\n".join(l for l in lines if not l.startswith("#|")).strip("\n")
        for out in cell.get("outputs", []):
            if WIDGET in out.get("data", {}): out["data"] = {"text/html": WIDGET_NOTE, "text/plain": "(interactive panel)"}
    if note:
        title = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("# ")), -1)
        nb.cells.insert(title + 1, nbformat.v4.new_markdown_cell(f"```{{note}}\n{note}\n```"))
    return nb

def toctree(caption: str, names: list[str]) -> str:
    return "\n".join(["", f"```{{toctree}}", ":hidden:", f":caption: {caption}", "", *names, "```", ""])

def stage(run: Path, out: Path, run_missing: bool = True) -> Path:
    "Lay out the site's source folder (<out>/src) from `run`; return it."
    import nbformat
    if not any(run.glob("*.ipynb")):
        raise SystemExit(f"{run} holds no executed notebooks: run the pipeline first (`make pipeline` writes "
                         "runs/laptop; `muomni pipeline --preset PRESET` writes runs/PRESET)")
    preset = run_preset(run)
    src = out / "src"
    shutil.rmtree(src, ignore_errors=True); src.mkdir(parents=True)
    chapters = book_order()
    for name in chapters:
        nbformat.write(page(*chapter_source(name, run, out, preset, run_missing)), src / name)
    index = (ROOT / "README.md").read_text(encoding="utf-8")
    if (run / "results.md").exists():
        shutil.copy(run / "results.md", src / "results.md")
        index += toctree("Results", ["results"])
    stems = [Path(n).stem for n in chapters]
    index += toctree("Chapters", [s for s in stems if int(s[:2]) >= 26])
    index += toctree("Reference", [s for s in stems if int(s[:2]) < 26])
    (src / "index.md").write_text(index, encoding="utf-8")
    return src

def sphinx(src: Path, html: Path, built_from: str) -> None:
    "Build `src` into `html` with docs/conf.py (`built_from` goes in the footer); errors stop the build."
    shutil.rmtree(html, ignore_errors=True)
    env = {**os.environ, "MUOMNI_SITE_FROM": built_from}
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-c", str(ROOT / "docs"), "-d", str(html.parent / "doctrees"),
           str(src), str(html)]
    r = subprocess.run(cmd, env=env)
    if r.returncode: raise SystemExit(f"sphinx-build failed ({r.returncode}): {' '.join(cmd)}")

def build(run: Path, out: Path, run_missing: bool = True) -> Path:
    "The whole build: stage the pages, run Sphinx; return <out>/html."
    run, out = run.resolve(), out.resolve()
    src = stage(run, out, run_missing)
    where = f" in <code>{run.relative_to(ROOT)}</code>" if run.is_relative_to(ROOT) else ""
    sphinx(src, out / "html", f"the executed notebooks of a <code>{run_preset(run)}</code> pipeline run{where}")
    print(f"[docs] site: {out / 'html' / 'index.html'}")
    return out / "html"

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/laptop", help="folder of executed notebooks (default runs/laptop)")
    ap.add_argument("--out", default="_site", help="build folder: src/, html/, executed/ (default _site)")
    ap.add_argument("--no-execute", action="store_true", help="show chapters the run lacks without outputs")
    a = ap.parse_args(argv)
    build(ROOT / a.run, ROOT / a.out, run_missing=not a.no_execute)
    return 0

if __name__ == "__main__": sys.exit(main())
