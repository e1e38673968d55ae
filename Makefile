# Developer entry points. Each target creates .venv on first use and reinstalls the project only when
# its metadata changed or a top-level package appeared (the editable install maps packages by name, so
# a new service package is invisible to `swarm` until the project is reinstalled).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
INSTALL_INPUTS := pyproject.toml $(wildcard */__init__.py)
PACKAGES := $(wildcard common auth_svc project_svc comment_svc notif_svc gateway bench)
# common is checked with mypy --strict: every mechanism the services build on is fully typed.
STRICT_PACKAGES := common
PYTEST_WORKERS ?= 2

.PHONY: run test fuzz lint bench clean distclean install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(INSTALL_INPUTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

## make run: start the whole system (embedded Redis + PostgreSQL in .swarm/); ARGS="--port 9090" to pass options
run: $(STAMP)
	$(BIN)/swarm up $(ARGS)

## make test: the whole test suite, on PYTEST_WORKERS processes (each with its own servers);
## --dist loadfile keeps a module's tests together, so a module-scoped system is never flushed mid-module
test: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## make fuzz: the schemathesis run of tests/fuzz (every check, every phase, the whole system) with more examples
## per operation than the smoke in `make test`: FUZZ_MAX_EXAMPLES (default 100); FUZZ_MAX_SECONDS=N to keep
## fuzzing until N seconds are spent
FUZZ_MAX_EXAMPLES ?= 100
fuzz: $(STAMP)
	FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) FUZZ_MAX_SECONDS=$(FUZZ_MAX_SECONDS) $(BIN)/pytest tests/fuzz -s $(PYTEST_ARGS)

## make lint: style (ruff), types (mypy), and the import contracts of pyproject.toml (import-linter)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict $(STRICT_PACKAGES)
	$(BIN)/mypy $(filter-out $(STRICT_PACKAGES),$(PACKAGES))
	$(BIN)/lint-imports

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $@

## make bench: run the benchmarks on real processes and rewrite bench/REPORT.md; BENCH_ARGS="--quick" or "--only gateway".
## The load generator and the reference proxy come from Debian: installed when missing if we are root.
bench: $(BENCH_STAMP)
	@if ! command -v wrk >/dev/null || ! { command -v nginx >/dev/null || test -x /usr/sbin/nginx; }; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "bench: installing wrk and nginx-light from Debian"; \
	    apt-get install -y -q wrk nginx-light >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q wrk nginx-light >/dev/null; }; \
	  else \
	    echo "bench: needs wrk and nginx: sudo apt-get install -y wrk nginx-light" >&2; exit 1; \
	  fi; \
	fi
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## make clean: caches and build leftovers (keeps .venv and the data in .swarm/)
clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

## make distclean: also the virtualenv and the data of `make run`
distclean: clean
	rm -rf $(VENV) .swarm
