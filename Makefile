# The two commands of the README's quick start are `make run` and `make test`.
PYTHON ?= python3
PIP = $(PYTHON) -m pip install --quiet --disable-pip-version-check

.PHONY: install install-test browser run test test-fast bench

install:
	$(PIP) -r requirements.txt -e .

# Debian's Chromium drives the end-to-end tests (Playwright's own download needs the internet).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

install-test: install browser
	$(PIP) -r requirements-dev.txt

run: install
	$(PYTHON) -m streamlit run app.py

test: install-test
	$(PYTHON) -m pytest

test-fast:
	$(PYTHON) -m pytest -m "not e2e"

bench: install-test
	$(PYTHON) bench/run.py
