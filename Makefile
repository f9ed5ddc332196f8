# μOmni companion: one-command setup, pipeline, tests and site.
#   make pipeline   set up .venv (first time only) and train all five stages with the CPU preset
#   make test       set up .venv (first time only) and run the whole test suite (CI runs exactly this)
#   make docs       build the static site from a pipeline run's executed notebooks (RUN=runs/laptop) into _site/html
PYTHON ?= python3
PRESET ?= laptop
RUN    ?= runs/$(PRESET)
SITE   ?= _site
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup browser pipeline test docs check-docs readme sync clean-nbs

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,docs]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (muomni)" >/dev/null
	@touch $(STAMP)

# Debian's Chromium, for the site's browser test (tests/test_docs.py, make check-docs).
browser:
	@sh tools/install_browser.sh

pipeline: setup
	$(BIN)/muomni pipeline --preset $(PRESET) --publish

test: setup browser
	$(BIN)/python tools/check_sync.py
	$(BIN)/nbdev-test --n-workers 1 --file-re '^0[0-2]_'
	$(BIN)/nbdev-test --n-workers 2 --skip-file-re '^0[0-2]_' --timing
	$(BIN)/pytest

docs: setup
	$(BIN)/python tools/build_docs.py --run $(RUN) --out $(SITE)

check-docs: setup browser
	$(BIN)/python tools/check_site.py --site $(SITE)

readme: setup
	$(BIN)/python tools/check_sync.py --write-readme

clean-nbs: setup
	$(BIN)/nbdev-clean
