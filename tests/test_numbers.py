"""What README and the chapters state must be true: a measured number in their prose is one the committed reference
results (results/laptop.json) hold, and every module, notebook, config or file they name exists.

Measured-looking numbers are percentages with decimals ("8.8 %"), numbers with two or more decimals ("1.349"),
durations ("48.2 min", "780 s") and rates ("9,080 tok/s"). Bars and targets are not measurements: a line that states
a bar (≤, ≥, <, >, "bar", "book", "target") is skipped, as are code (fenced or inline) and the generated results
block between `<!-- results:begin -->` and `<!-- results:end -->`."""
import json, re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
REFERENCE = ROOT / "results" / "laptop.json"

MEASURED = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?\s?(%|min\b|s\b|tok/s|utt/s|img/s|nats)"
                      r"|(?<![\w.])\d+\.\d{2,}(?![\w.])")
BAR_WORDS = re.compile(r"[≤≥<>]|\bbar\b|\bbars\b|\bbook\b|\btarget", re.I)
MODULE = re.compile(r"\bmuomni\.([a-z_]+)")
IN_WHEEL_ONLY = {"muomni/configs"}     # configs/ as the wheel packages it (pyproject.toml's package-dir)
PATH = re.compile(r"`((?:nbs|configs|tests|tools|docs|results|muomni)/[\w./-]+)`")


def prose_lines(markdown: str):
    "Lines of prose: fenced code, inline code and the generated results block removed."
    markdown = re.sub(r"<!-- results:begin -->.*?<!-- results:end -->", "", markdown, flags=re.S)
    markdown = re.sub(r"```.*?```", "", markdown, flags=re.S)
    for line in markdown.splitlines():
        yield re.sub(r"`[^`]*`", "", line)


def looks_measured(m: re.Match, line: str) -> bool:
    "False for what only looks like a measurement: a version (Python 3.10+) or a decade (the 1990s)."
    if line[m.end():m.end() + 1] == "+" or re.search(r"(?i)\b(python|version|v)\s*$", line[:m.start()]): return False
    return not re.fullmatch(r"(1[89]|20)\d0s", m.group(0))


def reference_values() -> set[str]:
    "Every number in the reference results, in the forms a text may show it."
    if not REFERENCE.exists(): return set()
    out = set()
    def walk(v):
        if isinstance(v, dict): [walk(x) for x in v.values()]
        elif isinstance(v, list): [walk(x) for x in v]
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            for x in (v, 100 * v, v / 60):
                for d in range(0, 4): out.add(f"{x:.{d}f}")
                out.add(f"{x:,.0f}")
    walk(json.loads(REFERENCE.read_text()))
    return out


def documents():
    yield "README.md", (ROOT / "README.md").read_text(encoding="utf-8")
    for nb in sorted(NBS.glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        yield f"nbs/{nb.name}", "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


@pytest.mark.parametrize("name,text", list(documents()), ids=lambda x: x if isinstance(x, str) and len(x) < 40 else "")
def test_measured_numbers_come_from_the_reference_results(name, text):
    known, bad = reference_values(), []
    for line in prose_lines(text):
        if BAR_WORDS.search(line): continue
        for m in MEASURED.finditer(line):
            if not looks_measured(m, line): continue
            number = (m.group(1) or m.group(0)).replace(",", "") + (m.group(2) or "") if m.group(1) else m.group(0)
            if number.replace(",", "") not in known and number not in known: bad.append(f"{m.group(0)!r} in: {line.strip()[:120]}")
    assert not bad, f"{name} states measured numbers that results/laptop.json does not hold:\n" + "\n".join(bad[:20])


@pytest.mark.parametrize("name,text", list(documents()), ids=lambda x: x if isinstance(x, str) and len(x) < 40 else "")
def test_named_modules_and_files_exist(name, text):
    missing = [f"muomni.{m}" for m in set(MODULE.findall(text)) if not (ROOT / "muomni" / f"{m}.py").exists()]
    missing += [p for p in set(PATH.findall(text)) - IN_WHEEL_ONLY if not re.search(r"[<>*{}]", p) and not (ROOT / p).exists()]
    assert not missing, f"{name} names what does not exist: {sorted(missing)}"
