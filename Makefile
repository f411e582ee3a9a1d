# relook: two commands. `make test` sets up .venv (pip) if missing, then runs the test suite.
PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.relook-installed
TORCH   ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test demo bench clean

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install -q $(TORCH)
	$(VPY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(VPY) -m pytest -q -p no:cacheprovider tests

demo: $(STAMP)
	$(VPY) -m relook.cli demo --out runs/demo

bench: $(STAMP)
	for b in benchmarks/*.py; do $(VPY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
