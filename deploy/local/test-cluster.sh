#!/usr/bin/env bash
# The part of `make test` that needs a real Kafka cluster: the representative faults
# of tests/chaos (those not marked `chaos`; `make chaos` runs them all) on three local
# KRaft brokers with their own PostgreSQL, on the ports of
#   MATCHMAKING_PORT_OFFSET=$CLUSTER_PORT_OFFSET KAFKA_BROKERS=3 . deploy/local/ports.env
# (CLUSTER_PORT_OFFSET: 3000, or MATCHMAKING_PORT_OFFSET + 3000 when that is set)
# (Kafka 12092/12192/12292, PostgreSQL 8432, state in /var/tmp/matchmaking-3000), never
# the default platform's broker: the tests kill and restart broker processes.
# infra.sh provisions the cluster as it does the single broker (a fresh state dir is
# formatted, a running cluster reused). A cluster this script started is stopped at the
# end, one that was running is left running. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Whatever platform the caller's environment names, the cluster gets its own settings:
# offset 3000 beside the default platform, or 3000 above a second platform's offset
# (scripts/bare_debian.sh runs `make test` with 20000 on this machine's network).
cluster_offset="${CLUSTER_PORT_OFFSET:-$((${MATCHMAKING_PORT_OFFSET:-0} + 3000))}"
unset MATCHMAKING_STATE_DIR KAFKA_BOOTSTRAP_SERVERS KAFKA_CONTROLLER_PORT KAFKA_SCRAM \
    KAFKA_PARTITIONS KAFKA_REPLICATION_FACTOR TEST_INFRA CHAOS
export MATCHMAKING_PORT_OFFSET="$cluster_offset" KAFKA_BROKERS=3
# shellcheck source=deploy/local/ports.env
. deploy/local/ports.env

# Anything of it stopped (or never provisioned): this run starts it, and stops it after.
started=0
status="$(bash deploy/local/infra.sh status)"
if grep -qv ' running ' <<<"$status"; then
    started=1
fi
stop_if_started() {
    if ((started)); then
        bash deploy/local/infra.sh down >/dev/null || echo "test-cluster.sh: infra.sh down failed" >&2
    fi
}
trap stop_if_started EXIT

t0=$SECONDS
bash deploy/local/infra.sh up
echo "test-cluster.sh: cluster ready in $((SECONDS - t0)) s (started here: $started)"
.venv/bin/python -m pytest -p no:cacheprovider -rs --durations=3 -m "not chaos" tests/chaos "$@"
