# μOmni companion: one-command setup, pipeline and tests.
#   make pipeline   set up .venv (first time only) and train all five stages with the CPU preset
#   make test       set up .venv (first time only) and run the whole test suite (CI runs exactly this)
PYTHON ?= python3
PRESET ?= laptop
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup pipeline test readme sync clean-nbs

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (muomni)" >/dev/null
	@touch $(STAMP)

pipeline: setup
	$(BIN)/muomni pipeline --preset $(PRESET) --publish

test: setup
	$(BIN)/python tools/check_sync.py
	$(BIN)/nbdev-test --n-workers 1 --file-re '^0[0-2]_'
	$(BIN)/nbdev-test --n-workers 2 --skip-file-re '^0[0-2]_' --timing
	$(BIN)/pytest

readme: setup
	$(BIN)/python tools/check_sync.py --write-readme

clean-nbs: setup
	$(BIN)/nbdev-clean
