# transcend: `make run` materialises the default asset graph, `make test` runs the whole test suite.
# Both create .venv, install the project and Stockfish first, so they work on a fresh machine; `make test` also installs
# Postgres and Redis for the tests marked `distributed` (as root).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TRANSCEND_HOME ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(TRANSCEND_HOME)/dagster
PYTEST_ARGS ?=

.PHONY: install stockfish services run study test test-fast ui bench lint validate clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar off -e '.[dev]'
	@touch $@

# Stockfish is a system package: install it where we are root, otherwise say how.
stockfish:
	@if [ -n "$$STOCKFISH_PATH" ] && [ -x "$$STOCKFISH_PATH" ]; then exit 0; fi; \
	if command -v stockfish >/dev/null 2>&1 || [ -x /usr/games/stockfish ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Stockfish (apt-get install -y stockfish)..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stockfish >/dev/null; \
	else \
		echo "Stockfish is required: run 'sudo apt-get install -y stockfish' (or 'brew install stockfish'), or set STOCKFISH_PATH." >&2; \
		exit 1; \
	fi

# Postgres, Redis and RabbitMQ, which the tests marked `distributed` start on 127.0.0.1 themselves: installed where we
# are root; elsewhere those tests skip (nothing else needs them: `make run` records its runs in SQLite).
SERVICES := postgresql redis-server rabbitmq-server
services:
	@if command -v redis-server >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		&& [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing the distributed tests' servers (apt-get install -y $(SERVICES))..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SERVICES) >/dev/null; \
	else \
		echo "A server is missing: the tests marked 'distributed' will be skipped (sudo apt-get install -y $(SERVICES))." >&2; \
	fi

install: $(VENV)/.installed stockfish

run: install
	$(PY) -m transcend_pipeline.cli run

# The diversity study: every arm and seed of `study: diversity` in experiments.yaml, after (or without) `make run`.
study: install
	$(PY) -m transcend_pipeline.cli study

test: install services
	$(PY) -m pytest -n 2 --durations=15 $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -n 2 -m "not slow and not distributed" $(PYTEST_ARGS)

ui: install
	$(PY) -m transcend_pipeline.cli ui

bench: install
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

validate: install
	$(PY) -m transcend_pipeline.cli validate

clean:
	rm -rf $(TRANSCEND_HOME)
