# Beacon developer tasks. `make help` lists them.
#
# On a machine with only Python: `make run` starts the whole stack, `make test` runs the suite.
# PostgreSQL and Redis come from scripts/devservices.py (embedded, in .devservices/) unless
# DATABASE_URL / REDIS_URL are set in the environment, which then win.
# Recipes are POSIX sh.

SHELL := /bin/sh
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.beacon-requirements
DEVSERVICES := $(VENV_PY) scripts/devservices.py
# Base port of `make run` and the process types it starts. Every port `make run` opens follows
# it, so two checkouts run side by side with PORTs at least 200 apart (README, "Ports"):
# web PORT, worker metrics PORT+10, sandbox control PORT+100 (its vendors +101, +102, +125, +126, +130, +131).
PORT ?= 8000
RUN_PORTS = SANDBOX_BASE_PORT=$$(($(PORT) + 100)) WORKER_METRICS_PORT=$$(($(PORT) + 10))
RUN_PROCESSES ?= web worker beat sandbox
# Extra arguments for pytest, e.g. make test PYTEST_ARGS="-x -k checkout"
PYTEST_ARGS ?=

# Prefix of a recipe line that needs the services' variables and the venv's commands on PATH.
IN_ENV := . .devservices/env && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" &&

.PHONY: help venv .venv run test lint migrate shell services-up services-down services-status clean-services

help: ## List the targets
	@echo "Beacon make targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_. -]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv .venv: $(VENV_STAMP) ## Create .venv and install requirements-dev.txt (again when requirements change)

$(VENV_STAMP): requirements.txt requirements-dev.txt
	@if ! $(VENV_PY) -c "" 2>/dev/null; then echo "Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv --clear $(VENV); fi
	$(VENV_PY) -m pip install --disable-pip-version-check -r requirements-dev.txt
	@touch $@

services-up: venv ## Start embedded PostgreSQL/Redis (only those whose URL variable is unset)
	$(DEVSERVICES) up

services-down: ## Stop the embedded services of this checkout
	@if [ -x $(VENV_PY) ]; then $(DEVSERVICES) down; else echo "no $(VENV): nothing to stop"; fi

services-status: ## Show the embedded services
	@if [ -x $(VENV_PY) ]; then $(DEVSERVICES) status || true; else echo "no $(VENV): nothing runs"; fi

clean-services: services-down ## Stop the embedded services and delete .devservices (all their data)
	rm -rf .devservices

.env:
	@echo "Writing .env (development settings; see .env.example for every variable)"
	@umask 077 && { \
	  echo "# Development settings written once by make run; real environment variables win."; \
	  echo "DEBUG=true"; \
	  echo "SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')"; \
	  echo "LOG_FORMAT=text"; \
	} > .env.tmp && mv .env.tmp .env

migrate: services-up ## Apply database migrations
	$(IN_ENV) python manage.py migrate --noinput

shell: services-up ## Django shell against the development services
	$(IN_ENV) python manage.py shell

run: services-up .env ## Start the whole stack: release step, seed demo data, then web/worker/beat/sandbox (Ctrl-C stops)
	@case "$(PORT)" in ''|*[!0-9]*) echo "make run: PORT must be a number, got '$(PORT)'" >&2; exit 2;; esac; \
	  if [ "$(PORT)" -lt 1024 ] || [ "$(PORT)" -gt 65400 ]; then \
	    echo "make run: PORT must be between 1024 and 65400 (it uses PORT..PORT+131), got $(PORT)" >&2; exit 2; fi
	@# The Procfile's release step: collectstatic (the admin's CSS through WhiteNoise), then migrate.
	$(IN_ENV) deploy/release
	$(IN_ENV) export $(RUN_PORTS) && PORT=$(PORT) python manage.py seed_demo
	@echo "Starting $(RUN_PROCESSES) (web on http://127.0.0.1:$(PORT)/, worker metrics on :$$(($(PORT) + 10)), sandbox on :$$(($(PORT) + 100)); Ctrl-C stops all)"
	@# --env /dev/null: config/settings.py reads .env itself, where real environment variables win;
	@# honcho would otherwise let .env override them.
	@# Metrics: web and worker each get a fresh multiprocess directory under here (deploy/with-metrics-dir).
	$(IN_ENV) export PROMETHEUS_MULTIPROC_ROOT="$(CURDIR)/.devservices/metrics" $(RUN_PORTS) && exec honcho --env /dev/null start --port $(PORT) $(RUN_PROCESSES)

# `python -m pytest`, not `pytest`: it puts the checkout on sys.path before pytest.ini's
# `-p config.pytest_plugin` is imported (the bare script fails with "No module named 'config'").
test: services-up ## Run the test suite (PYTEST_ARGS="..." passes arguments); fails on no tests too
	@$(IN_ENV) python -m pytest $(PYTEST_ARGS) || { rc=$$?; \
	  if [ $$rc -eq 5 ]; then why=" (no tests collected)"; else why=""; fi; \
	  echo "make test: pytest exited with status $$rc$$why" >&2; exit $$rc; }

lint: venv ## ruff check .
	$(VENV)/bin/ruff check .

# The admin driven in headless Chromium (Debian's /usr/bin/chromium) with a real Celery worker.
# `make test` runs them too; they skip, saying why, only when /usr/bin/chromium is missing.
# Screenshots: artifacts/screenshots/.
.PHONY: test-browser
test-browser: services-up ## Run only the browser tests of the admin (needs apt-get install chromium)
	@$(IN_ENV) python -m pytest -m browser tests/browser $(PYTEST_ARGS)

# Fault injection under load (chaos/): its own database ($CHAOS_DATABASE, default beacon_chaos, on DATABASE_URL's server), its own
# Redis, gunicorn, two workers, beat and the sandbox; table in artifacts/chaos/summary.md. About 4 minutes.
.PHONY: chaos
chaos: services-up ## Break Beacon on purpose under load (Redis, workers, vendors, PostgreSQL, idempotency)
	@$(IN_ENV) python -m chaos.run $(CHAOS_ARGS)

# The benchmark of issue 6 (bench/run.py): its own PostgreSQL server (durable, deleted after the
# run; BENCH_ARGS="--database-url postgres://..." runs on another server that has the room),
# Redis, sandbox, gunicorn, workers and beat; load from locust (fixed rate) and Debian's hey
# (closed loop: apt-get install hey). Results: bench/results/<timestamp>/.
# Both targets also run the floor (../shared/bench-floor/limitapp.py) and the peer (bench/peer/)
# beside Beacon (scenarios compare and faults; docs/performance.md, "Floor, peer and Beacon").
BENCH_ARGS ?=
BENCH_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"
.PHONY: bench bench-quick bench-tools
bench: venv bench-tools ## Run the full benchmark (about 95 minutes); results in bench/results/<timestamp>/
	$(BENCH_ENV) python -m bench.run $(BENCH_ARGS)

bench-quick: venv bench-tools ## Run the short benchmark, one repetition per point (about 12 minutes)
	$(BENCH_ENV) python -m bench.run --quick $(BENCH_ARGS)

bench-tools: ## Install Debian's hey (the closed-loop load tool) if it is missing
	@command -v hey >/dev/null 2>&1 || { echo "Installing hey (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hey; }

# Beacon on several hosts (cluster/): network namespaces `bcn-*` on a private bridge, PostgreSQL
# behind PgBouncer, Redis, RabbitMQ, two web hosts behind HAProxy, worker hosts, beat and the
# sandbox, with hosts failing under load. Needs root; installs its Debian packages if missing.
# Table in artifacts/cluster/summary.md. About 5 minutes.
.PHONY: cluster-test cluster-tools
CLUSTER_PACKAGES := iproute2 util-linux haproxy pgbouncer rabbitmq-server
cluster-tools: ## Install what the multi-host harness needs (Debian: HAProxy, PgBouncer, RabbitMQ, iproute2)
	@missing=""; for tool in ip setpriv haproxy pgbouncer rabbitmq-server; do \
	  command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $$tool"; done; \
	  if [ -n "$$missing" ]; then echo "Installing$$missing (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(CLUSTER_PACKAGES) >/dev/null; \
	    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now haproxy pgbouncer >/dev/null 2>&1 || true; fi; fi

cluster-test: venv cluster-tools ## Beacon on several hosts (network namespaces) with hosts failing under load
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" python -m cluster.run $(CLUSTER_ARGS)
