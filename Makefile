# Developer and CI entry points. The local infrastructure (Kafka + PostgreSQL,
# no Docker) is run by deploy/local/infra.sh; its state lives in
# /var/tmp/matchmaking (MATCHMAKING_STATE_DIR).

SHELL := /bin/bash
UV_VERSION := 0.13.8
export UV_PYTHON_DOWNLOADS := never

.PHONY: venv infra-up infra-down infra-status

# .venv from uv.lock, with the system python3 (uv never downloads a Python).
venv:
	@command -v uv >/dev/null 2>&1 || pip3 install -q uv==$(UV_VERSION)
	@hash -r; UV="$$(command -v uv || echo python3 -m uv)"; \
	  $$UV sync --frozen --python python3

# Start Kafka and PostgreSQL, create the databases and topics (idempotent).
infra-up:
	@bash deploy/local/infra.sh up

# Stop what infra-up started; data stays on disk.
infra-down:
	@bash deploy/local/infra.sh down

infra-status:
	@bash deploy/local/infra.sh status
