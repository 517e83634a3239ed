# The local stack and its tests. Everything a target needs is installed on first use, idempotently
# (scripts/install_backends.sh): the Python env with uv, the collector and Jaeger built with Go.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PY := .venv/bin/python
INSTALL := scripts/install_backends.sh
# For the everyday targets: installs what is missing, says nothing about what is already there.
ENSURE := $(INSTALL) --quiet

.PHONY: help install up down restart rolling-restart status logs demo test test-unit test-e2e test-reliability
.PHONY: test-compose test-scale-out test-replicas test-cluster bench-scale-out bench-replicas
.PHONY: lint format
.PHONY: load bench demo-faults demo-regression test-times

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

install: ## Install the Python env, the collector and Jaeger (only what is missing)
	@$(INSTALL)

# DB=postgres: the services on a local PostgreSQL; REPLICAS=N (with DB=postgres): N processes of
# each service behind HAProxy on the usual ports. Both reach stackctl as environment variables;
# --postgres installs Debian's postgresql and haproxy when missing.
up: ## Start Jaeger, the collector, the four services and the trace browser (STORAGE=opensearch, DB=postgres, REPLICAS=N)
	@$(ENSURE)
	@$(if $(filter opensearch,$(STORAGE)),$(ENSURE) --opensearch)
	@$(if $(or $(filter postgres,$(DB)),$(filter-out 1,$(REPLICAS))),$(ENSURE) --postgres)
	@$(PY) -m stackctl up

down: ## Stop what `make up` started
	@[ -x $(PY) ] && $(PY) -m stackctl down || true

restart: down up ## Stop, then start again (data and traces are kept)

rolling-restart: ## With REPLICAS>1: restart each replica in turn, drained in HAProxy first (no request refused)
	@$(ENSURE) --python
	@$(PY) -m stackctl rolling-restart

status: ## Pid and health of every process
	@$(ENSURE) --python
	@$(PY) -m stackctl status

# `make logs P=api-gateway N=50`; RAW=1 for the JSON lines as written.
logs: ## Last lines of each process's log, readable (P=<process> for one, N=<lines>)
	@$(ENSURE) --python
	@$(PY) -m stackctl logs $(P) $(if $(N),--lines $(N)) $(if $(RAW),--raw)

demo: ## Bring the stack up if needed, place orders, show their traces from Jaeger (DB, REPLICAS as for up)
	@$(ENSURE)
	@$(if $(or $(filter postgres,$(DB)),$(filter-out 1,$(REPLICAS))),$(ENSURE) --postgres)
	@$(PY) -m stackctl demo

test: install lint ## Lint, then unit, storage, end-to-end, reliability, compose, scale-out, replicas and cluster tests (real binaries, real Docker, real Kubernetes)
	@$(INSTALL) --test-tools
	@$(INSTALL) --postgres
	@$(INSTALL) --docker
	@$(INSTALL) --cluster
	@$(PY) -m pytest tests

test-unit: ## Unit tests only: in process, no collector, Jaeger or browser needed
	@$(INSTALL) --python
	@$(PY) -m pytest tests/unit

test-storage: install ## Storage tests only: the stores on SQLite and on a throwaway PostgreSQL, several processes on one
	@$(INSTALL) --postgres
	@$(PY) -m pytest tests/storage

test-e2e: install ## End-to-end tests only (real collector, Jaeger, services, Chromium; free ports)
	@$(INSTALL) --test-tools
	@$(PY) -m pytest tests/e2e

test-scale-out: install ## Scale-out tier: Jaeger on OpenSearch, the agent and gateway collectors, the Helm chart
	@$(INSTALL) --test-tools
	@$(PY) -m pytest tests/scale_out

test-replicas: install ## Replicas tier: PostgreSQL, two processes of each service behind HAProxy; oversell, idempotency, replica loss
	@$(INSTALL) --postgres
	@$(PY) -m pytest tests/replicas

test-cluster: install ## Cluster tier: the Helm chart on a real single-node Kubernetes (root; about 25 min of building once)
	@$(INSTALL) --test-tools
	@$(INSTALL) --docker
	@$(INSTALL) --cluster
	@$(PY) -m pytest tests/cluster

test-reliability: install ## Reliability tests only (backends and services killed, load, hostile input)
	@$(PY) -m pytest tests/reliability

test-times: install ## Time make test and make test-unit; write the figures to docs/operations.md and README.md
	@$(PY) benchmarks/tier_times.py

test-compose: install ## Compose tests only: docker compose up as the README says, on a real engine (3-4 min warm)
	@$(INSTALL) --docker
	@$(PY) -m pytest tests/compose

lint: install ## ruff check and ruff format --check
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

format: install ## ruff format and the safe fixes
	@.venv/bin/ruff check --fix . && .venv/bin/ruff format .

# `make load USERS=20 SPAWN_RATE=5 RUN_TIME=1m`; LOAD_HOST (default: the running stack's
# gateway) must be loopback unless LOAD_ALLOW_REMOTE=1 (load/locustfile.py refuses anything else).
USERS ?= 10
SPAWN_RATE ?= 5
RUN_TIME ?= 30s

load: ## Locust, headless: USERS, SPAWN_RATE, RUN_TIME against LOAD_HOST (starts the stack if needed)
	@$(ENSURE)
	@$(PY) -m stackctl up
	@$(PY) -m locust -f load/locustfile.py --headless --users $(USERS) --spawn-rate $(SPAWN_RATE) \
		--run-time $(RUN_TIME) --stop-timeout 10 --host $(or $(LOAD_HOST),$$($(PY) -m stackctl url gateway))

bench: install ## Tracing cost, SDK floor, order path floor, levers, span delivery, time to queryable, then bench-replicas (wrk; ~40 min) -> docs/benchmarks.md
	@$(INSTALL) --bench-tools
	@$(PY) benchmarks/overhead.py $(BENCH_ARGS)
	@$(INSTALL) --postgres
	@$(PY) benchmarks/replicas.py

bench-replicas: install ## PostgreSQL beside SQLite per order; 1, 2, 3 replicas of each service (~6 min) -> docs/benchmarks.md, docs/scale-out.md
	@$(INSTALL) --bench-tools
	@$(INSTALL) --postgres
	@$(PY) benchmarks/replicas.py $(BENCH_ARGS)

bench-scale-out: install ## Gateway spans/s, memory per held trace, OpenSearch disk per million spans (~4 min) -> docs/scale-out.md
	@$(INSTALL) --test-tools
	@$(PY) benchmarks/scale_out.py $(BENCH_ARGS)

demo-faults: ## Inject a latency and an error fault, send orders, let the analyzer name the culprits
	@$(ENSURE)
	@$(PY) -m stackctl demo-faults

demo-regression: ## Orders, then orders with a latency fault; the analyzer compares the two windows live
	@$(ENSURE)
	@$(PY) -m stackctl demo-regression
