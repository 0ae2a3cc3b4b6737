# Developer and CI entry points. The local infrastructure (Kafka + PostgreSQL,
# no Docker) is run by deploy/local/infra.sh; its state lives in
# /var/tmp/matchmaking (MATCHMAKING_STATE_DIR).

SHELL := /bin/bash
UV_VERSION := 0.13.8
export UV_PYTHON_DOWNLOADS := never
# uv trusts the system's certificate store (as apt, pip and Maven do), so that a
# proxy's authority added there (update-ca-certificates) is trusted too.
export UV_SYSTEM_CERTS := 1

.PHONY: chaos axe k8s-tools test-cluster venv infra-up infra-down infra-status up down status demo test test-unit bench bench-scheduling bench-placement bench-sender bench-recommendations bench-import bench-rebuild bench-event lint asyncapi browse

# .venv from uv.lock, with the python3 found on PATH (uv never downloads a Python).
# uv $(UV_VERSION) itself comes from PATH or from a private venv (deploy/local/uv.sh),
# since Debian's Python refuses `pip3 install` (PEP 668).
venv:
	@UV="$$(bash deploy/local/uv.sh $(UV_VERSION))" && \
	  PYTHON="$$(python3 -c 'import sys; print(sys.executable)')" && \
	  "$$UV" sync --frozen --python "$$PYTHON"
	@# the scheduler's compiled annealing loop into numba's cache (else its first long run compiles it)
	@.venv/bin/python -m services.scheduling.solver.kempe_compiled || true

# Start Kafka and PostgreSQL, create the databases and topics (idempotent).
infra-up: venv
	@bash deploy/local/infra.sh up

# Stop what infra-up started; data stays on disk.
infra-down:
	@bash deploy/local/infra.sh down

infra-status:
	@bash deploy/local/infra.sh status

# The whole platform: infrastructure, then the five services; returns when all are ready.
# KAFKA_BROKERS=3: a local three-node Kafka cluster (deploy/local/kafka.sh); REPLICAS=2:
# two supervised processes of each service (deploy/local/services.sh).
up: venv infra-up
	@bash deploy/local/services.sh up

# Stop the services, then the infrastructure (data stays on disk).
down:
	@bash deploy/local/services.sh down
	@bash deploy/local/infra.sh down

status:
	@bash deploy/local/infra.sh status
	@bash deploy/local/services.sh status

# The platform's main job on local defaults: replays the HANNOVER MESSE 2015 cluster
# matchmaking through the public APIs and prints the report (scripts/replay_hannover.py);
# leaves its exports (CSV, XLSX, PDF) in var/exports/ and the platform running.
demo: up
	@.venv/bin/python -m scripts.replay_hannover
	@echo "Web portal (events, registration, agendas): http://127.0.0.1:$${PORTAL_PORT:-8005}/"

# Unit, contract and integration tests; integration tests use the real Kafka and
# PostgreSQL that infra-up starts (they fail, not skip, when those are missing). Then
# the representative faults of tests/chaos on a real 3-broker cluster on the ports of
# offset CLUSTER_PORT_OFFSET (3000), which deploy/local/test-cluster.sh provisions with
# infra.sh, and stops again if it started it (`make chaos` runs the whole matrix).
test: venv infra-up browser axe k8s-tools
	@.venv/bin/python -m pytest -p no:cacheprovider -rs --ignore=tests/chaos
	@bash deploy/local/test-cluster.sh

test-unit: venv
	@.venv/bin/python -m pytest -p no:cacheprovider tests/unit

# Debian's chromium for the dashboard's browser test (Playwright drives /usr/bin/chromium);
# without root or sudo it installs nothing and the test skips, saying why (-rs shows it).
browser:
	@bash deploy/local/browser.sh

# kubeconform and kustomize (go install, pinned) in var/tools/bin for the manifests' schema
# test (tests/unit/test_k8s_schemas.py); without Go that test skips, saying why.
k8s-tools:
	@bash deploy/local/k8s-tools.sh

# axe-core (npm) for the portal's accessibility check in the browser test, under var/axe
# (not committed); the test skips the check when it is missing.
axe:
	@test -f var/axe/node_modules/axe-core/axe.min.js || npm install --no-save --no-audit \
	  --no-fund --prefix var/axe axe-core@4.14.1 >/dev/null 2>&1 \
	  || echo "axe-core not installed (npm failed): the portal test skips its accessibility check"

# The fault matrix (tests/chaos) on a local Kafka cluster of KAFKA_BROKERS (3) nodes that
# infra.sh starts; never on the default ports' broker: source deploy/local/ports.env
# first (e.g. MATCHMAKING_PORT_OFFSET=3000 KAFKA_BROKERS=3). Table: var/chaos/table.md.
chaos: venv
	@nodes="$${KAFKA_BROKERS:-$$(tr ',' '\n' <<<"$${KAFKA_BOOTSTRAP_SERVERS:-x}" | wc -l)}"; \
	  test "$$nodes" -ge 3 || { echo "make chaos needs KAFKA_BROKERS=3 and other ports: MATCHMAKING_PORT_OFFSET=3000 KAFKA_BROKERS=3 . deploy/local/ports.env" >&2; exit 2; }
	@bash deploy/local/infra.sh up
	@CHAOS=1 .venv/bin/python -m pytest -p no:cacheprovider -s -rs tests/chaos
	@cat var/chaos/table.md

# Only the cluster part of `make test` (the representative faults on the 3-broker cluster).
test-cluster: venv
	@bash deploy/local/test-cluster.sh

# Throughput and latency of the backbone on the local stack (figures in var/bench/).
bench: venv infra-up
	@.venv/bin/python -m bench.backbone

# The 20 published forum instances against the best known (../shared/bench/b2b), then the
# solver vs greedy baseline vs CP-SAT on generated events, all checked independently.
bench-scheduling: venv
	@.venv/bin/python -m bench.scheduling

# Scheduling's placement of 2,500 accepts and a re-optimisation, without Kafka or HTTP.
bench-placement: venv infra-up
	@.venv/bin/python -m bench.placement

# Notification's sender alone: the due e-mails of 2,000 accepts into the local mail catcher,
# CPU per e-mail of the sender, the catcher and PostgreSQL (figures in var/bench/sender.json).
bench-sender: venv infra-up
	@.venv/bin/python -m bench.sender

# Recommendations: 5,000 participants from scratch, one new registration, recall@10.
bench-recommendations: venv infra-up
	@.venv/bin/python -m bench.recommendations

# Every service's rebuild over ~213,000 generated events of a BIO-Europe-sized event, then
# each service's real subscription catching up a backlog against raw aiokafka
# (figures in var/bench/rebuild.json and var/bench/catchup.json).
bench-rebuild: venv infra-up
	@.venv/bin/python -m bench.rebuild
	@.venv/bin/python -m bench.catchup

# A whole event through the running platform's public APIs (SIZE=hannover|bremen|bioeurope),
# against a do-nothing stub first (the baseline); brings the platform up as `make demo`
# does. Table and figures in var/bench/event-$(SIZE).{md,json}; see bench/README.md.
SIZE ?= hannover
bench-event: up
	@.venv/bin/python -m bench.event $(SIZE) $(if $(RATE),--rate $(RATE),)

# Spreadsheet import: 5,000 rows through a registration service (figures in var/bench/import.json).
bench-import: venv infra-up
	@.venv/bin/python -m bench.imports

lint: venv
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/mypy shared services scripts bench tests

# Regenerate the checked-in AsyncAPI documents from the payload models.
asyncapi: venv
	@.venv/bin/python -m shared.asyncapi

# Regenerate the Grafana dashboards (deploy/grafana/dashboards/*.json) from scripts/dashboards.py.
.PHONY: dashboards
dashboards: venv
	@.venv/bin/python -m scripts.dashboards

# Rebuild a service's projections from its events beside the live ones and compare them
# (SERVICE=registration|matching|reporting|notification; SWITCH=1 switches the rebuilt tables in).
.PHONY: rebuild
rebuild: venv
	@.venv/bin/python -m services.$(SERVICE).rebuild $(if $(SWITCH),--switch,)
