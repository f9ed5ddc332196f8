"""The executed chapters as a reader sees them: what papermill saves (figures as images, a few lines of progress), and
the static site `make docs` builds from them (tools/build_docs.py), opened page by page in headless Chromium
(tools/check_site.py). The site is built once per session from the chapters' smoke runs (conftest's `smoke_run`),
the same executed notebooks the papermill tests check.

Sphinx, MyST-NB or Chromium missing: the site tests skip, except in CI (the CI environment variable set; .ci/run
sets it), where they fail. `make test` installs all three."""
import importlib.util, json, os, re, shutil, sys

import nbformat
import papermill as pm
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import build_docs, check_site

BAR = re.compile(r"\|\s*\d+/\d+ \[")                      # tqdm's "| 20/20 [00:05<00:00, 3.9it/s]" (or s/it)
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

def need(what: str, ok, how: str):
    "Skip the test when a tool is missing, except in CI, where that fails it."
    if ok: return
    (pytest.fail if IN_CI else pytest.skip)(f"{what} is missing: {how}" + (" (CI is set: failing, not skipping)" if IN_CI else ""))

def cell_with(nb_path, text: str) -> dict:
    "The one code cell of an executed notebook whose source contains `text`."
    cells = [c for c in json.loads(nb_path.read_text())["cells"] if c["cell_type"] == "code" and text in "".join(c["source"])]
    assert len(cells) == 1, f"{len(cells)} code cells of {nb_path.name} contain {text!r}"
    return cells[0]

def test_training_cell_keeps_its_plot_and_little_progress(smoke_run):
    cell = cell_with(smoke_run.execute("27_stage_a.ipynb"), "train_text(cfg)")
    images = [o for o in cell["outputs"] if "image/png" in o.get("data", {})]
    assert images, f"no image/png among the training cell's outputs: {[list(o.get('data', {})) for o in cell['outputs']]}"
    bars = [o for o in cell["outputs"] if BAR.search("".join(o.get("data", {}).get("text/plain", "")))]
    assert len(bars) == 1, f"{len(bars)} progress-bar outputs: the bar should be one output, replaced in place"
    printed = "".join("".join(o["text"]) for o in cell["outputs"] if o["output_type"] == "stream")
    assert "\r" not in printed and not BAR.search(printed), "progress refreshes were saved as printed lines"
    # what is left is the cell's own prints: the data and the model (2 lines), 4 lines at each of the 2 validations
    assert len(printed.splitlines()) <= 12, printed

def test_pyplot_figures_are_images_when_mplbackend_is_agg(tmp_path, monkeypatch):
    "A kernel started with MPLBACKEND=agg (a CI job, a container) would draw nowhere; importing muomni.core fixes it."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import muomni.core\nimport matplotlib.pyplot as plt"),
                                         nbformat.v4.new_code_cell("plt.plot([1, 3, 2]); plt.show()")])
    nb.metadata["kernelspec"] = dict(name="python3", display_name="Python 3", language="python")
    nbformat.write(nb, tmp_path / "plot.ipynb")
    monkeypatch.setenv("MPLBACKEND", "agg")
    pm.execute_notebook(str(tmp_path / "plot.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3", progress_bar=False)
    outputs = json.loads((tmp_path / "out.ipynb").read_text())["cells"][1]["outputs"]
    assert any("image/png" in o.get("data", {}) for o in outputs), outputs

@pytest.fixture(scope="session")
def smoke_site(smoke_run, tmp_path_factory):
    "The site built from the smoke runs of every chapter (26 ran the data stage only, as in test_notebooks)."
    need("Sphinx / MyST-NB / sphinx-book-theme", all(importlib.util.find_spec(m) for m in ("sphinx", "myst_nb", "sphinx_book_theme")),
         "pip install -e '.[docs]' (make setup does)")
    run = tmp_path_factory.mktemp("site-run")
    for name in build_docs.book_order():
        params = dict(stages="data", out_dir=str(smoke_run.folder / "pipeline")) if name.startswith("26_") else {}
        (run / name).symlink_to(smoke_run.execute(name, **params))
    for f in ("results.json", "results.md"): shutil.copy(smoke_run.folder / "pipeline" / f, run / f)
    out = tmp_path_factory.mktemp("site")
    build_docs.build(run, out, run_missing=False)
    return out

def test_site_has_a_page_per_chapter_in_book_order(smoke_site):
    html = smoke_site / "html"
    chapters = [n.removesuffix(".ipynb") for n in build_docs.book_order()]
    assert chapters[0].startswith("26_") and chapters[-3:] == ["00_core", "01_data", "02_everyday"]
    for page in ["index", "results", "search", *chapters]: assert (html / f"{page}.html").exists(), page
    nav = re.findall(r'href="(\d\d_\w+)\.html"', (html / "index.html").read_text())
    assert list(dict.fromkeys(nav)) == chapters, nav
    assert "μOmni, notebook first" in (html / "index.html").read_text()                 # README is the front page
    assert "data:audio/wav;base64," in (html / "01_data.html").read_text()              # players carry their sound
    assert (html / ".nojekyll").exists()

def test_site_in_a_browser(smoke_site):
    need("Chromium", check_site.find_browser(), "apt-get install chromium (make test does, as root)")
    result = check_site.check_site(smoke_site)
    counts = result["counts"]
    print("site check:", json.dumps(counts), "screenshots in", smoke_site / "screenshots")
    assert not result["problems"], "\n".join(result["problems"])
    assert counts["pages"] == len(build_docs.book_order()) + 2                          # + the front page and results
    assert counts["figures"] > 0 and counts["players"] > 0 and counts["players_with_sound"] == counts["players"]
    assert counts["players_that_played"] == counts["players"]
    for stage in ("27_stage_a", "28_stage_b", "29_stage_c", "30_stage_d", "31_stage_e"):
        assert result["pages"][stage]["output_images"] >= 1, f"{stage}: no figure on its page (its live training plot?)"
    assert counts["search_results"] > 0
    assert all(os.path.getsize(p) > 10_000 for p in result["screenshots"])
