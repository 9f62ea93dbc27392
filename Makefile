# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint install bench bench-smoke

run: $(VENV)/.installed  ## set up, migrate, seed the demo, start web + worker (Ctrl-C stops all)
	$(PY) scripts/dev.py run

test: $(VENV)/.installed  ## the whole test suite
	$(PY) scripts/dev.py test

# Every benchmark at full size; each rewrites its table in docs/benchmarks.md (minutes: run on a quiet machine).
BENCHES := realtime_layers factory_dispatch status_push storyboard_api render_assembly scheduler_tick approval_burst load_producers workflow_affinity review_round

bench: $(VENV)/.installed  ## all benchmarks, full size, tables written to docs/benchmarks.md
	set -e; for b in $(BENCHES); do echo "--- $$b"; $(PY) bench/$$b.py --write-docs; done

bench-smoke: $(VENV)/.installed  ## all benchmarks at a tiny size (what CI runs through tests/bench/)
	set -e; for b in $(BENCHES); do echo "--- $$b"; $(PY) bench/$$b.py --smoke; done

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@
