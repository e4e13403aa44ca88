# The two commands of the README's quick start are `make run` and `make test`.
# Both make and use the project's own virtualenv (.venv): Debian and Ubuntu refuse
# `pip install` into the system Python (PEP 668, "externally-managed-environment").
PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
PIP = $(PY) -m pip install --quiet --disable-pip-version-check
# The dashboard listens on this machine only unless told otherwise (Docker sets 0.0.0.0).
ADDRESS ?= 127.0.0.1
PORT ?= 8501
# TORCH=cpu: PyTorch's CPU-only wheels of the pinned versions (no CUDA stack: about 2.2 GB of
# .venv instead of 6.8), from this index; where it cannot be reached, the install says so.
TORCH ?=
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# Debian's packages, waiting (10 min at most) for another apt-get that holds apt's locks
# (two checkouts' `make test` at once) instead of failing: `install` waits on its own,
# `update` is tried again.
APT_UPDATE = n=0; until apt-get update -qq; do n=$$((n+1)); [ $$n -lt 60 ] || exit 1; sleep 10; done
APT_INSTALL = DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq

.PHONY: install install-test browser docker-tools run lint format docs screenshots test test-fast bench

$(PY):
	@$(PYTHON) -c "import ensurepip" 2>/dev/null || { \
	  [ "$$(id -u)" = 0 ] || { echo "python3 -m venv needs Debian's python3-venv: sudo apt-get install python3-venv"; exit 1; }; \
	  $(APT_UPDATE); $(APT_INSTALL) python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)

# Stamps: a second `make run` starts at once; editing a requirements file reinstalls.
$(VENV)/.installed: $(PY) requirements.txt pyproject.toml
ifeq ($(TORCH),cpu)
	@$(PY) -c "import urllib.request; urllib.request.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=15)" 2>/dev/null || { \
	  echo "TORCH=cpu: PyTorch's CPU index $(TORCH_CPU_INDEX) cannot be reached from here; nothing was installed."; \
	  echo "Without TORCH=cpu, make installs PyPI's torch (its CUDA build, 6.8 GB of .venv; it runs on the CPU too)."; exit 1; }
	grep -E '^(torch|torchvision)==' requirements.txt > $(VENV)/torch-cpu.txt
	$(PIP) --index-url $(TORCH_CPU_INDEX) -r $(VENV)/torch-cpu.txt
endif
	$(PIP) -r requirements.txt -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	@touch $@

install: $(VENV)/.installed

# Debian's Chromium drives the end-to-end tests (Playwright's own download needs the internet).
browser:
	@command -v chromium >/dev/null 2>&1 || { $(APT_UPDATE); $(APT_INSTALL) chromium >/dev/null; }

# buildah and debootstrap build and run the Docker image in tests/test_docker.py.
docker-tools:
	@command -v buildah >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || { $(APT_UPDATE); $(APT_INSTALL) buildah debootstrap >/dev/null; }

install-test: $(VENV)/.installed-dev browser docker-tools

run: install
	$(PY) -m streamlit run app.py --server.address $(ADDRESS) --server.port $(PORT)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The documentation site (MkDocs, Material, mkdocstrings) into site/, warnings as errors;
# tests/test_docs.py builds it too, so CI does.
docs: $(VENV)/.installed-dev
	$(VENV)/bin/mkdocs build --strict

# The docs' and README's pictures, drawn from the real dashboard in Chromium.
screenshots: $(VENV)/.installed-dev browser
	$(PY) docs/screenshots.py

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: install-test lint
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest

# Minutes: no browser, no image build, no real ResNet-50 beyond a few fidelity checks.
test-fast: $(VENV)/.installed-dev
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -m "not e2e and not docker and not slow"

bench: install-test
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) bench/run.py
