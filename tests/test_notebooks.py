"""The end-to-end test: papermill runs every chapter notebook headless with the smoke preset, as a reader's
`papermill nbs/27_stage_a.ipynb out.ipynb -p preset smoke` would. A failing cell fails the test, naming the cell.
Each chapter runs once per session (conftest's `smoke_run`); the site test builds its pages from the same files."""
import json
from pathlib import Path

import pytest

from conftest import NBS

CHAPTERS = sorted(p.name for p in NBS.glob("[0-9][0-9]_*.ipynb") if not p.name.startswith("26_"))

def test_there_are_chapters():
    assert "00_core.ipynb" in CHAPTERS

@pytest.mark.parametrize("nb", CHAPTERS)
def test_chapter_runs_headless(nb, smoke_run):
    executed = json.loads(smoke_run.execute(nb).read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    assert injected, "papermill found no `parameters` cell to follow"

def test_pipeline_notebook_runs_stages_and_writes_results(smoke_run):
    runs = smoke_run.folder / "pipeline"
    smoke_run.execute("26_training_overview.ipynb", stages="data", out_dir=str(runs))
    results = json.loads((runs / "results.json").read_text())
    assert results["preset"] == "smoke" and [s["stage"] for s in results["stages"]] == ["data"]
    assert results["stages"][0]["status"] in ("ok", "not built")

def test_pipeline_cli_runs_the_data_stage(cli, tmp_path):
    r = cli("pipeline", "--preset", "smoke", "--stages", "data", "--out", tmp_path / "runs")
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads((tmp_path / "runs/results.json").read_text())
    assert [s["stage"] for s in results["stages"]] == ["data"]
    assert (tmp_path / "runs/results.md").read_text().startswith("# μOmni pipeline results (preset `smoke`)")

def test_pipeline_failure_keeps_earlier_results_and_stops_dependents(tmp_path, monkeypatch):
    import nbformat
    from muomni import pipeline
    nbs = tmp_path / "nbs"; nbs.mkdir()
    def notebook(name, code):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("preset = 'smoke'", metadata=dict(tags=["parameters"])),
                                             nbformat.v4.new_code_cell(code)])
        nb.metadata["kernelspec"] = dict(name="python3", display_name="Python 3", language="python")
        nbformat.write(nb, nbs / name)
    notebook("01_data.ipynb", "assert preset == 'smoke'")
    notebook("27_stage_a.ipynb", "assert 1 + 1 == 3, 'the Thinker fell over'")
    monkeypatch.setattr(pipeline, "nbs_dir", lambda: nbs)
    with pytest.raises(RuntimeError, match=r"27_stage_a.ipynb failed in cell .*the Thinker fell over"):
        pipeline.run_pipeline("smoke", stages="data,A,E", out_dir=str(tmp_path / "runs"))
    results = json.loads((tmp_path / "runs/results.json").read_text())
    assert [(s["stage"], s["status"]) for s in results["stages"]] == [("data", "ok"), ("A", "failed")]   # E never started
    assert "| A | failed |" in (tmp_path / "runs/results.md").read_text()
