# bitloot-lite: `make migrate` then `make test` on a fresh clone; `make help` lists the rest.
# DATABASE_URL is passed through to every target (default: sqlite:///bitloot.db).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CLI    := $(BIN)/bitloot-lite
PYTEST_ARGS ?=
BENCH_STAMP := $(VENV)/.bench-installed
BITLOOT_BENCH_PG_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

.DEFAULT_GOAL := help
.PHONY: help install migrate rollback status sql check test lint bench clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(STAMP) ## Create .venv and install the package with its test extra (only when needed)

# Reinstalled only when the package's declaration changes. Its lines and output go to
# stderr, so that `make sql > file.sql` holds only SQL even on a fresh clone.
$(STAMP): setup.cfg pyproject.toml
	@echo "installing bitloot-lite into $(VENV) ..." >&2
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]' >&2
	@touch $@

migrate: $(STAMP) ## Apply pending migrations (make migrate TO=003_create_webhook_logs)
	$(CLI) migrate $(if $(TO),--to $(TO))

rollback: $(STAMP) ## Undo the newest migration (STEPS=N or TO=NAME for more, TO=zero for all)
	$(CLI) rollback $(if $(STEPS),--steps $(STEPS)) $(if $(TO),--to $(TO))

# @: the output of these is read (make sql > file.sql), so make does not echo the command.
status: $(STAMP) ## List applied and pending migrations (fails while any is pending)
	@$(CLI) status

sql: $(STAMP) ## Print the SQL the pending migrations would run (make sql > file.sql)
	@$(CLI) sql $(if $(TO),--to $(TO))

check: $(STAMP) ## Compare the live database with the schema and the models
	@$(CLI) check

test: $(STAMP) ## Run the tests on SQLite and PostgreSQL (PYTEST_ARGS=... to pass more)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## Check the code with ruff and mypy --strict (setup.cfg's [mypy])
	$(BIN)/python -m pip install --quiet --disable-pip-version-check ruff
	$(BIN)/ruff check bitloot_lite migrations tests bench
	$(BIN)/mypy

# The bench extra (SQLAlchemy, a contender) on top of the test install.
$(BENCH_STAMP): $(STAMP) setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	touch $@

bench: $(BENCH_STAMP) ## Benchmarks on SQLite and PostgreSQL (BITLOOT_BENCH_SCALE=0.1 for a quick run)
	BITLOOT_BENCH_PG_URL='$(BITLOOT_BENCH_PG_URL)' $(BIN)/python -m bench.run

clean: ## Remove .venv, caches and the default SQLite file
	rm -rf $(VENV) .pytest_cache build *.egg-info bitloot.db bitloot.db-wal bitloot.db-shm \
		bitloot.db.migrate-lock
