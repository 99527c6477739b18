# The two commands a newcomer needs:  make demo   and   make test
.PHONY: demo test lint bench bench-full contract clean

# make demo PORT=8080: another port for the demo's server
PORT ?= 8000
# Three test workers per core: many tests wait (servers starting, time limits running out,
# subprocesses), so two workers on two cores left the cores idle for a third of the run. Four
# and six are close: quiet two-core runs took 515 and 552 s of pytest with four workers,
# 461-532 s (three runs) with six; the cores idle 1.1% and 0.5% of the time (BENCHMARKS.md,
# "Session 65 (2026-12-07): the suite on a fresh clone, ...").
# (nproc, else getconf, else one core: macOS has no nproc; review 31a)
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1); echo $$((n * 3)))
# the shared contract and DUIS samples, beside this checkout (make contract SHARED=/elsewhere)
SHARED ?= ../shared

demo:        ## build a realistic demo SAT on SQLite (demo.db) and serve it on http://127.0.0.1:$(PORT)
	@scripts/bootstrap
	.venv/bin/servicetrail --db sqlite:///demo.db demo --port $(PORT)

# pytest rewrites the asserts of the test modules and of its plugins' packages (schemathesis,
# hypothesis, anyio: ~250 modules) as it imports them, and caches nothing where
# PYTHONDONTWRITEBYTECODE is set, as on CI machines. xdist's controller rewrites the test
# modules before its workers start (tests/rewritten_once.py), ~4 s of CPU while the run waits,
# and each of the five processes rewrote the plugins' (~1 s of CPU each). One collection
# writes them all first; its errors are the run's to say, so its output is dropped.
# Lint runs beside the collection and then the tests, its output kept for the end: run before
# them it held the tests back 35-45 s of a fresh clone's run (mypy has no cache there) while
# the tests leave the cores idle a third of the time (session 58). Its status is the step's
# when it fails, else the tests'. (`make -n test` runs the first line: it holds $(MAKE).)
# The 25 slowest steps close the log: CI's time is near its bar, and the log is all a failed
# run leaves to say where it went (session 65).
test:        ## the whole test suite, the linter and the type checker beside it (installs Chromium and PostgreSQL first if missing)
	@scripts/bootstrap
	@scripts/system-deps
	@rm -f .lint.log .lint.status; \
	    ($(MAKE) --no-print-directory lint > .lint.log 2>&1; echo $$? > .lint.status) & \
	    env -u PYTHONDONTWRITEBYTECODE .venv/bin/pytest --collect-only -q > /dev/null 2>&1; true
	.venv/bin/pytest -n $(TEST_WORKERS) --dist worksteal --durations=25; tested=$$?; \
	    while [ ! -f .lint.status ]; do sleep 1; done; \
	    cat .lint.log; linted=$$(cat .lint.status); rm -f .lint.log .lint.status; \
	    [ "$$linted" = 0 ] || exit $$linted; exit $$tested

lint:        ## ruff and mypy, as configured in pyproject.toml
	@scripts/bootstrap
	.venv/bin/ruff format --check src tests bench devsupport
	.venv/bin/ruff check src tests bench devsupport
	.venv/bin/mypy

contract:    ## the shared contract check, CLI and API, on SQLite
	@scripts/bootstrap
	python3 $(SHARED)/contract/check_contract.py --bin .venv/bin/servicetrail --via cli --duis-samples $(SHARED)/duis/samples
	python3 $(SHARED)/contract/check_contract.py --bin .venv/bin/servicetrail --via api --duis-samples $(SHARED)/duis/samples

bench:       ## the benchmarks of BENCHMARKS.md at a quick size (minutes)
	@scripts/bootstrap
	@scripts/system-deps
	.venv/bin/python bench/run.py --quick

bench-full:  ## every figure of BENCHMARKS.md: 1M records, then 10M (about 35 minutes, 30 GB of free disk)
	@scripts/bootstrap
	@scripts/system-deps
	.venv/bin/python bench/run.py --records 1000000
	.venv/bin/python bench/run.py --records 10000000 --skip ingest,duis
	.venv/bin/python bench/demo_search.py

clean:
	rm -rf .venv demo.db demo.db-* test-artifacts .pytest_cache
