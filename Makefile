# Distributed Test System — every user-facing command. `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/sh

VENV    ?= .venv
# no mkdocs-material banner about its successor on every docs build
export NO_MKDOCS_2_WARNING = 1
PYTHON  ?= python3
PY      := $(VENV)/bin/python
ENGINE  ?=
QUEUE   ?=
COUNT   ?=
TASKS   ?= 20
SWEEP   ?=
WATCH   ?=
PYTEST_ARGS ?=
FLOWER_PORT ?= 5555
YES     ?=
QUICK   ?=
SETTINGS ?=
IMAGE   ?=
DURATION ?=
INTERVAL ?=
BROKER  ?= host
RABBITMQ ?=
VOLUMES ?=
NODES   ?=
ifeq ($(filter $(BROKER),host compose cluster remote),)
$(error BROKER must be host, compose, cluster or remote (got '$(BROKER)'): e.g. make up BROKER=compose)
endif

ifneq ($(NODES),)
ifneq ($(ENGINE),swarm)
$(error NODES=$(NODES) is the swarm engine on that many Docker engines of this machine: add ENGINE=swarm)
endif
endif

# the registry's engine names (dts/engines/registry.py), read without the venv so `make help` works anywhere
ENGINE_NAMES := auto $(shell sed -n 's/^ *"\([a-z0-9_-]*\)": "dts\.engines\..*/\1/p' dts/engines/registry.py)
empty :=
space := $(empty) $(empty)
ENGINE_ARG = $(if $(ENGINE),--engine $(ENGINE))
# BROKER=compose: RabbitMQ as the compose `broker` service (profile `broker`); BROKER=cluster: three RabbitMQ
# nodes (profile `cluster`); both on the compose engine. RABBITMQ=3.10|4.0|4.3: the line those containers run
BROKER_ARG = $(if $(filter compose cluster,$(BROKER)),--broker $(BROKER)) $(if $(RABBITMQ),--rabbitmq $(RABBITMQ))
BROKER_ENGINE = $(if $(filter compose cluster,$(BROKER)),--engine compose,$(ENGINE_ARG))
# NODES=N: scale.py talks to the manager of `make swarm-nodes` (DOCKER_HOST), its image in the nodes' registry
SCALE = $(if $(NODES),env $$(DTS_IMAGE=$$($(PY) scale.py engine --image) sh scripts/swarm-nodes.sh env)) $(PY) scale.py
# in a recipe that set $$engine: build the worker image when that engine runs it (compose, swarm)
BUILD_IF_NEEDED = if [ "$$($(PY) scale.py engine --engine $$engine --needs-image)" = yes ]; then PY=$(PY) sh scripts/build-image.sh; fi
export DOCKER_BUILDKIT ?= 0
export COMPOSE_DOCKER_CLI_BUILD ?= 0

.PHONY: help install broker build compose stack deploy up down run test lint docs docs-serve docs-ref docs-check docs-samples logs monitor ps status health scale scale-all load-test autoscale bench bench-pools bench-profile bench-cluster bench-logs swarm-nodes swarm-nodes-down k8s flower flower-login dlq dlq-replay purge migrate-queues clean

help: ## List the targets
	@echo "usage: make TARGET [VAR=value]   (ENGINE=$(subst $(space),|,$(ENGINE_NAMES)) (default: engine.name), BROKER=host|compose|cluster|remote, RABBITMQ=3.10|4.0|4.3 with BROKER=compose|cluster, QUEUE=POOL COUNT=N, TASKS=20, WATCH=1, NODES=3 with ENGINE=swarm)"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(VENV)/.installed ## Create .venv, install the pinned requirements (+ dev tools) and this package (editable: the `dts` command)

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-plot.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

broker: install ## RabbitMQ answers on localhost (installed if needed) + the workers' vhost/user in .env; BROKER=compose|cluster: its image + .env only; BROKER=remote: nothing (another host's)
ifeq ($(BROKER),remote)
	@echo "BROKER=remote: the broker runs on another host; BROKER_URL (or .env) says where"
else ifeq ($(BROKER),compose)
	$(PY) -m dts broker --compose
	RABBITMQ=$(RABBITMQ) sh scripts/build-broker-image.sh
else ifeq ($(BROKER),cluster)
	$(PY) -m dts broker --cluster
	RABBITMQ=$(RABBITMQ) sh scripts/build-broker-image.sh
else
	PYTHON=$(PYTHON) sh scripts/ensure-broker.sh
	$(PY) -m dts broker
endif

build: install ## Build the worker image (BASE_IMAGE=...; a local Debian base when no registry answers)
	PY=$(PY) sh scripts/build-image.sh

compose: install ## Write the compose file rendered from the pools in test-config.yml; print how to use it
	$(PY) scale.py compose $(BROKER_ARG)

k8s: install ## Write Kubernetes + KEDA manifests for the pools to deploy/k8s/ (IMAGE=registry/dts-worker:tag); no cluster needed
	$(PY) scale.py k8s $(if $(IMAGE),--image $(IMAGE))
stack: install ## Write the swarm stack file rendered from the pools (and its secret file); print how to deploy it
	$(PY) scale.py stack --engine swarm

up: install broker ## Start every pool at its declared replicas (containers if Docker answers, else processes); BROKER=compose: RabbitMQ in a container too; BROKER=cluster: three RabbitMQ nodes
	@engine=$$($(PY) scale.py engine $(BROKER_ENGINE)); echo "engine: $$engine"; \
	$(BUILD_IF_NEEDED); \
	$(SCALE) up --engine $$engine $(BROKER_ARG)

deploy: install broker $(if $(NODES),swarm-nodes) ## Like up; ENGINE=swarm: build the image, deploy the stack (a single-node swarm if none), wait for consumers
	@engine=$$($(PY) scale.py engine $(ENGINE_ARG)); echo "engine: $$engine"; \
	$(BUILD_IF_NEEDED); \
	$(SCALE) up --engine $$engine $$($(PY) scale.py engine --engine $$engine --deploy-args)

down: ## Stop every worker, containers and processes (warm shutdown); BROKER=compose|cluster: the broker containers too (VOLUMES=1: and their data)
	@if [ -x $(PY) ]; then $(SCALE) down $(BROKER_ENGINE) $(BROKER_ARG) $(if $(VOLUMES),--volumes); fi

run: up ## Set up everything (venv, broker, workers), then run the dispatcher
	$(PY) dispatch.py

test: install ## Run the whole test suite (unit, integration against a real RabbitMQ, containers if Docker runs)
	PYTHON=$(PYTHON) sh scripts/ensure-broker.sh
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install ## ruff check + format check; the docs' generated reference matches the code; the docs site builds (strict)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) scripts/docs_check.py
	$(VENV)/bin/mkdocs build --strict --quiet

docs: install docs-ref ## Build the docs site into site/ (mkdocs, strict: a broken link fails)
	$(VENV)/bin/mkdocs build --strict

docs-serve: install docs-ref ## Serve the docs site on http://127.0.0.1:8000 while you edit it
	$(VENV)/bin/mkdocs serve

docs-ref: install ## Regenerate the docs' reference pages (CLI, config, environment, exit codes, bounds, result files, make targets) and README's generated blocks
	$(PY) scripts/docs_reference.py

docs-check: install ## Fail when the docs' reference differs from the code, a guide carries a date, a commit or a machine's name, a command in a guide does not parse, a code block's line is wider than 88 characters, or a sample's renderer changed since it was made (in make lint)
	$(PY) scripts/docs_check.py

docs-samples: install ## Regenerate the docs' sample outputs from a real run (needs `make up ENGINE=local` first) and their renderers' hashes, then the reference
	$(PY) scripts/docs_samples.py
	$(PY) scripts/docs_reference.py

status: install ## Per pool: wanted/running workers, consumers, ready/unacked messages (WATCH=1: every second, tasks/s)
	$(SCALE) status $(if $(WATCH),--watch) $(ENGINE_ARG)

health: install ## Broker reachable, each queue's consumers and depth, each worker's ping; make exits 2 on any failure (`dts health`: 3 broker, 4 a queue or worker)
	$(SCALE) health $(ENGINE_ARG)

ps: status ## Same as status

scale: install ## Resize one pool: make scale QUEUE=POOL COUNT=N (QUEUE takes a pool or a queue name)
	@if [ -z "$(QUEUE)" ] || [ -z "$(COUNT)" ]; then echo "usage: make scale QUEUE=POOL COUNT=N (pools: see test-config.yml)" >&2; exit 2; fi
	$(SCALE) set $(QUEUE) $(COUNT) $(ENGINE_ARG)

scale-all: install ## Resize every pool: make scale-all COUNT=4
	@if [ -z "$(COUNT)" ]; then echo "usage: make scale-all COUNT=4" >&2; exit 2; fi
	$(SCALE) all $(COUNT) $(ENGINE_ARG)

autoscale: install ## Resize the pools that have an autoscale: range on their queue depth, until Ctrl-C (DURATION=S INTERVAL=S)
	$(PY) scale.py auto $(ENGINE_ARG) $(if $(DURATION),--duration $(DURATION)) $(if $(INTERVAL),--interval $(INTERVAL))

load-test: install ## Load the running pools: make load-test TASKS=20 [SWEEP=1,2,4,8]
	$(PY) load_test.py --tasks $(TASKS) $(if $(SWEEP),--sweep $(SWEEP) $(ENGINE_ARG))

bench: install ## Benchmark vs plain Celery and raw AMQP, one table with ratios and PASS/MISS (QUICK=1: a smoke run)
	PYTHON=$(PYTHON) sh scripts/ensure-broker.sh
	$(PY) -m bench.run $(if $(QUICK),--quick)

swarm-nodes: install ## NODES Docker engines on this machine joined as one swarm, a local registry holding the worker image (NODES=3; root)
	sh scripts/swarm-nodes.sh up $(or $(NODES),3)
	PY=$(PY) sh scripts/build-image.sh
	sh scripts/swarm-nodes.sh push $$($(PY) scale.py engine --image)

swarm-nodes-down: ## Remove what `make swarm-nodes` made: the nodes' stacks, engines, namespaces, links and data, the registry
	sh scripts/swarm-nodes.sh down

bench-cluster: install ## One broker node against a three-node cluster (compose): no-op throughput and seed overhead, one run
	PYTHON=$(PYTHON) sh scripts/ensure-broker.sh
	sh scripts/build-broker-image.sh
	$(PY) -m bench.cluster

bench-logs: install ## Worker logs on disk against their bound: 100,000 no-op tasks through compose workers whose logs rotate (QUICK=1: 6,000; root, Docker)
	$(PY) -m bench.logs $(if $(QUICK),--tasks 6000)

bench-pools: install ## Pool settings side by side: no-op throughput, CPU per task, seed overhead (SETTINGS="threads:4:16 ...")
	PYTHON=$(PYTHON) sh scripts/ensure-broker.sh
	$(PY) -m bench.pools $(SETTINGS)

bench-profile: install ## Where a worker's CPU goes on a no-op load: py-spy of one worker's processes (SETTING=prefork:1:1)
	PYTHON=$(PYTHON) sh scripts/ensure-broker.sh
	$(PY) -m bench.profile $(SETTING)

logs: install ## Show the last lines of the running workers' logs
	@$(SCALE) logs $(ENGINE_ARG)

monitor: install ## Follow the workers' logs (Ctrl-C to stop)
	@$(PY) scale.py logs --follow --lines 5 $(ENGINE_ARG)

flower: install ## Flower on http://127.0.0.1:5555 (FLOWER_PORT=...), login in .env; ENGINE=compose: the `monitoring` profile
	@if [ "$(ENGINE)" = compose ]; then PY=$(PY) sh scripts/build-image.sh && $(PY) -m dts flower --engine compose --port $(FLOWER_PORT); \
	else $(PY) -m dts flower --port $(FLOWER_PORT); fi

flower-login: install ## Print Flower's user and password (generated into .env the first time)
	@$(PY) -m dts flower --login

dlq: install ## List the dead letters of every queue: time, task, id, attempts, reason (nothing is consumed)
	@$(PY) -m dts dlq list

dlq-replay: install ## Re-publish every dead letter to its work queue (retries start again)
	@$(PY) -m dts dlq replay

purge: install ## Empty the work queues after a confirmation (YES=1: without asking); dead letters stay
	@$(PY) -m dts dlq purge $(if $(YES),--yes)

migrate-queues: install ## Once, workers stopped: redeclare queues made without dead-lettering (messages kept)
	@$(PY) -m dts dlq migrate

clean: down ## Stop the workers, remove .venv, .run, results/ (the result files), site/ and caches (nothing outside this project)
	rm -rf $(VENV) .run results site .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
