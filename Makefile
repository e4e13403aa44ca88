# The two commands of the README's quick start are `make run` and `make test`.
PYTHON ?= python3
PIP = $(PYTHON) -m pip install --quiet --disable-pip-version-check

.PHONY: install install-test browser docker-tools run test test-fast bench

install:
	$(PIP) -r requirements.txt -e .

# Debian's Chromium drives the end-to-end tests (Playwright's own download needs the internet).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# buildah and debootstrap build and run the Docker image in tests/test_docker.py.
docker-tools:
	@command -v buildah >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap >/dev/null; }

install-test: install browser docker-tools
	$(PIP) -r requirements-dev.txt

run: install
	$(PYTHON) -m streamlit run app.py

test: install-test
	$(PYTHON) -m pytest

test-fast:
	$(PYTHON) -m pytest -m "not e2e and not docker"

bench: install-test
	$(PYTHON) bench/run.py
