# `make run` sets up and starts the server; `make test` sets up and runs every check CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench bench-relay dashboard system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

# Silent, so a refused start-up is the program's own one-line reasons.
run: $(VENV)/.runtime
	@$(BIN)/python main.py

# The browser tests drive Debian's chromium and the speech helper uses espeak-ng.
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v espeak-ng >/dev/null; then \
		if [ "$$(id -u)" != 0 ]; then echo "install chromium and espeak-ng (apt) first" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium espeak-ng >/dev/null; \
	fi

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

test: $(VENV)/.dev system-deps lint
	$(BIN)/pytest

bench: $(VENV)/.dev
	$(BIN)/python -m bench.load_and_fault

# Relay overhead at N = 50, 200 and 500 sessions (server pinned to one core; see bench/relay.py).
bench-relay: $(VENV)/.dev
	$(BIN)/python -m bench.relay --sessions 50 200 500 --seconds 20

# The Grafana dashboard's panels from a real Prometheus scraping the server under simulated
# patients, drawn into bench/grafana/dashboard.png (Debian's prometheus; no Grafana is needed).
dashboard: $(VENV)/.dev
	@command -v prometheus >/dev/null || { \
		if [ "$$(id -u)" != 0 ]; then echo "install prometheus (apt) first" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }
	$(BIN)/python -m bench.dashboard
