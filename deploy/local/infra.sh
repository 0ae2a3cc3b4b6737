#!/usr/bin/env bash
# Local infrastructure of the matchmaking platform, without Docker:
#   - Apache Kafka, one node in KRaft mode (no ZooKeeper), on localhost:9092
#     (PLAINTEXT; its controller on localhost:9093), or KAFKA_BROKERS nodes
#     (deploy/local/kafka.sh), run from Kafka's own jars fetched from Maven Central
#     (deploy/local/kafka/pom.xml);
#   - PostgreSQL (Debian's package, 15 or newer) on localhost:5432, its own
#     cluster, user postgres / password postgres over TCP;
#   - the service databases and the Kafka topics (with their `.dlq` topics).
# The ports are read from KAFKA_BOOTSTRAP_SERVERS and DATABASE_ADMIN_URL (below);
# deploy/local/ports.env sets every port of a second platform at once.
#
# Usage: deploy/local/infra.sh up|down|status
#   up      provision what is missing, start what is stopped, create databases
#           and topics; idempotent (a second run only checks, in a few seconds).
#   down    stop what `up` started (its pid files); data stays on disk.
#   status  one line per component.
#
# State lives outside the repository, in $MATCHMAKING_STATE_DIR
# (default /var/tmp/matchmaking): CI clones the repo under a private mktemp dir
# that the postgres OS user cannot enter, and the jar cache is then shared by
# every clone on this machine.
#   kafka/jars/<version>-<pom hash>/   the broker's jars (cache)
#   kafka/data/  kafka/logs/server.log  kafka/kafka.pid  kafka/server.properties
#   postgres/data/  postgres/postgres.log   (owned by the postgres OS user)
#   maven-repo/                          Maven's local repository
#
# Environment (kept simple on purpose):
#   KAFKA_BOOTSTRAP_SERVERS  unset (localhost:9092) or localhost:PORT /
#       127.0.0.1:PORT: run the local broker on PORT (or reuse whatever Kafka
#       already listens there). Anything else is an existing Kafka: nothing is
#       started, the topics are still created there.
#       A list of localhost addresses is a local cluster, one node per address.
#   KAFKA_BROKERS  how many local KRaft nodes (default: as many as listed); with one
#       address and KAFKA_BROKERS=N, node i listens on PORT + 100*(i-1). See kafka.sh.
#   KAFKA_PARTITIONS, KAFKA_REPLICATION_FACTOR  the topics' (shared.topics, settings).
#   KAFKA_CONTROLLER_PORT  the first node's KRaft controller (default PORT + 1).
#   DATABASE_ADMIN_URL  a superuser URL used to create the databases (default
#       postgresql://postgres:postgres@localhost:5432/postgres); on localhost, its
#       port is the local server's. If it, or any of REGISTRATION_/MATCHING_/
#       SCHEDULING_/NOTIFICATION_/REPORTING_DATABASE_URL, names another server, no local
#       PostgreSQL is provisioned or started; the databases are then created only
#       if DATABASE_ADMIN_URL is set.
#   MATCHMAKING_STATE_DIR  where state lives (see above).
#   KAFKA_HEAP_OPTS  the broker's heap (default -Xms256m -Xmx512m).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE_DIR="${MATCHMAKING_STATE_DIR:-/var/tmp/matchmaking}"

DATABASES=(registration matching scheduling notification reporting)

# Fixed KRaft cluster id: base64url of the 16 bytes "matchmaking-loca".
KAFKA_CLUSTER_ID="bWF0Y2htYWtpbmctbG9jYQ"
KAFKA_POM="$HERE/kafka/pom.xml"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM")"
DEPENDENCY_PLUGIN_VERSION="$(sed -n 's:.*<dependency.plugin.version>\(.*\)</dependency.plugin.version>.*:\1:p' "$KAFKA_POM")"
KAFKA_DIR="$STATE_DIR/kafka"
MAVEN_REPO="$STATE_DIR/maven-repo"
# Short-lived JVMs (StorageTool): start fast, stay small.
TOOL_JAVA_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto
                "-Dlog4j.configuration=file:$HERE/kafka/tools-log4j.properties")

PG_DIR="$STATE_DIR/postgres"
PGDATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"
PG_MIN_MAJOR=15

# ---------------------------------------------------------------- helpers --

log() { printf '%s [infra] %s\n' "$(date +%T)" "$*"; }
warn() { printf '%s [infra] WARNING: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '%s [infra] ERROR: %s\n' "$(date +%T)" "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Seconds since $1 (an $EPOCHREALTIME), one decimal.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# True if the process runs: exists and is no zombie (on this kind of machine
# PID 1 may reap orphans late, and kill -0 succeeds on a zombie).
pid_alive() {
    local state
    state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# Runs a command as the postgres OS user (Postgres refuses to run as root),
# from / since the caller's directory may be closed to that user.
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

apt_install() {
    is_root || die "need root to install Debian packages: $*"
    command -v apt-get >/dev/null || die "apt-get not found; install by hand: $*"
    local t0=$EPOCHREALTIME
    log "installing Debian packages: $* (apt-get update + install)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    log "installed $* in $(since "$t0")s"
}

# Java, Maven, curl...: what the scripts need, declared in packages.sh.
need_packages() {
    bash "$HERE/packages.sh" infra || die "missing Debian packages (see above)"
}

# host:port of a postgres URL (port 5432 when absent).
url_hostport() {
    local rest="${1#*://}"
    rest="${rest%%/*}"
    rest="${rest%%\?*}"
    rest="${rest##*@}"
    case "$rest" in
        \[*\]:*) ;;
        \[*\]) rest="$rest:5432" ;;
        *:*) ;;
        *) rest="$rest:5432" ;;
    esac
    printf '%s\n' "$rest"
}

# psql wants postgresql://, not SQLAlchemy-style postgresql+asyncpg://.
psql_url() {
    local scheme="${1%%://*}"
    printf '%s://%s\n' "${scheme%%+*}" "${1#*://}"
}

# ------------------------------------------------------------ environment --

# Kafka: KAFKA_BOOTSTRAP, KAFKA_MODE and the nodes' ports come from kafka.sh (below).

# The local server's port: DATABASE_ADMIN_URL's when that names localhost.
PG_PORT=5432
_admin="$(url_hostport "${DATABASE_ADMIN_URL:-postgresql://localhost:$PG_PORT/postgres}")"
case "$_admin" in
    localhost:* | 127.0.0.1:*) PG_PORT="${_admin##*:}" ;;
esac
unset _admin
PG_ADMIN_URL="$(psql_url "${DATABASE_ADMIN_URL:-postgresql://postgres:postgres@localhost:$PG_PORT/postgres}")"
PG_MODE=local
PG_EXTERNAL_REASON=""
for _var in DATABASE_ADMIN_URL REGISTRATION_DATABASE_URL MATCHING_DATABASE_URL \
            SCHEDULING_DATABASE_URL NOTIFICATION_DATABASE_URL REPORTING_DATABASE_URL; do
    [[ -n "${!_var:-}" ]] || continue
    case "$(url_hostport "${!_var}")" in
        "localhost:$PG_PORT" | "127.0.0.1:$PG_PORT" | "[::1]:$PG_PORT" | ":$PG_PORT") ;;
        *) PG_MODE=external; PG_EXTERNAL_REASON="$_var points to $(url_hostport "${!_var}")" ;;
    esac
done
unset _var

# ------------------------------------------------------------- postgresql --

PG_BIN=""

# The newest installed PostgreSQL >= 15: Debian's layout first, then PATH.
find_pg_bin() {
    local d major candidates=()
    while IFS= read -r d; do candidates+=("$d"); done \
        < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV)
    if command -v postgres >/dev/null; then
        candidates+=("$(dirname "$(readlink -f "$(command -v postgres)")")")
    fi
    for d in "${candidates[@]}"; do
        [[ -x "$d/postgres" && -x "$d/initdb" && -x "$d/pg_ctl" ]] || continue
        major="$("$d/postgres" --version | sed -n 's/.* \([0-9][0-9]*\)\.[0-9].*/\1/p')"
        if [[ -n "$major" && "$major" -ge "$PG_MIN_MAJOR" ]]; then
            PG_BIN="$d"
            return 0
        fi
    done
    return 1
}

ensure_pg_bin() {
    find_pg_bin && return 0
    # Debian's package creates and may start its own cluster "main" on 5432:
    # stop whatever clusters the install started, ours runs from $PGDATA.
    local before after
    before="$(pg_lsclusters -h 2>/dev/null | awk '$4 == "online" { print $1 " " $2 }' || true)"
    apt_install postgresql
    after="$(pg_lsclusters -h 2>/dev/null | awk '$4 == "online" { print $1 " " $2 }' || true)"
    local ver name
    while read -r ver name; do
        [[ -n "$ver" ]] || continue
        grep -qx "$ver $name" <<<"$before" && continue
        log "stopping Debian's cluster $ver/$name that the package install started"
        pg_ctlcluster "$ver" "$name" stop || true
    done <<<"$after"
    find_pg_bin || die "PostgreSQL >= $PG_MIN_MAJOR not found after installing Debian's postgresql"
}

psql_bin() {
    if [[ -n "$PG_BIN" && -x "$PG_BIN/psql" ]]; then
        printf '%s\n' "$PG_BIN/psql"
    elif find_pg_bin && [[ -x "$PG_BIN/psql" ]]; then
        printf '%s\n' "$PG_BIN/psql"
    elif command -v psql >/dev/null; then
        command -v psql
    else
        apt_install postgresql-client >&2
        command -v psql
    fi
}

admin_psql() {
    PGCONNECT_TIMEOUT=5 "$(psql_bin)" "$PG_ADMIN_URL" -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

# Pid of the postmaster of our cluster, if it runs.
pg_pid() {
    local pid
    [[ -r "$PGDATA/postmaster.pid" ]] || return 1
    pid="$(head -n 1 "$PGDATA/postmaster.pid")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    pid_alive "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == postgres* ]] || return 1
    printf '%s\n' "$pid"
}

# After a crash or a kill -9 the server leaves lock files that name a dead
# process (or one whose pid was reused); Postgres refuses to start then.
# Called only when our server is not running and the port is free.
pg_clear_stale_locks() {
    local f pid
    for f in "$PGDATA/postmaster.pid" "$PG_DIR/run/.s.PGSQL.$PG_PORT.lock" \
             "/var/run/postgresql/.s.PGSQL.$PG_PORT.lock"; do
        [[ -e "$f" ]] || continue
        pid="$(head -n 1 "$f" 2>/dev/null | tr -d ' -')"
        if [[ "$f" != "$PGDATA/postmaster.pid" && "$pid" =~ ^[0-9]+$ ]] && pid_alive "$pid" \
                && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == postgres* ]]; then
            continue
        fi
        warn "postgres: removing stale $f (process ${pid:-?} is gone)"
        rm -f "$f"
    done
}

pg_initdb() {
    local t0=$EPOCHREALTIME locale_opt=(--no-locale)
    # Text sorted by C (code point order, as C.UTF-8's, through PostgreSQL's fast paths:
    # shared/db.py create_database); character classes C.UTF-8's where it exists.
    locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$' && locale_opt=(--locale=C.UTF-8 --lc-collate=C)
    log "postgres: initdb $PGDATA"
    install -d -m 700 -o postgres -g postgres "$PGDATA" 2>/dev/null || mkdir -p -m 700 "$PGDATA"
    local pwfile="$PG_DIR/.initdb-password"
    printf 'postgres\n' >"$pwfile"
    is_root && chown postgres:postgres "$pwfile"
    chmod 600 "$pwfile"
    as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --pwfile="$pwfile" \
        --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 "${locale_opt[@]}" \
        >>"$PG_DIR/initdb.log" 2>&1 || { rm -f "$pwfile"; tail -n 20 "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pwfile"
    printf "\ninclude_if_exists = 'matchmaking.conf'\n" | as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null
    log "postgres: initdb done in $(since "$t0")s"
}

# Settings for local runs and tests, rewritten at every start.
pg_write_conf() {
    local sockets="$PG_DIR/run"
    if [[ -d /var/run/postgresql ]] && as_pg test -w /var/run/postgresql; then
        sockets="$sockets,/var/run/postgresql"
    fi
    as_pg tee "$PGDATA/matchmaking.conf" >/dev/null <<EOF
# Written by deploy/local/infra.sh at each start: edit that script instead.
listen_addresses = 'localhost'
port = $PG_PORT
unix_socket_directories = '$sockets'
max_connections = 300
shared_buffers = 256MB
# Commit times of rows (pg_xact_commit_timestamp): make bench-event reads when each
# consumer's inbox row became visible, i.e. the consumer's commit.
track_commit_timestamp = on
# Which statements cost what (bench/README.md, "What PostgreSQL spends its time on"):
# the view pg_stat_statements, once CREATE EXTENSION pg_stat_statements has run in a
# database. Loaded at start only, so a running server takes it at its next start.
shared_preload_libraries = 'pg_stat_statements'
EOF
}

pg_up() {
    local pid t0=$EPOCHREALTIME
    if pid="$(pg_pid)"; then
        log "postgres: already running (pid $pid, port $PG_PORT)"
        return 0
    fi
    if port_open 127.0.0.1 "$PG_PORT"; then
        if admin_psql -c 'SELECT 1' >/dev/null 2>&1; then
            log "postgres: reusing the server already listening on localhost:$PG_PORT (not started by infra.sh)"
            return 0
        fi
        die "port $PG_PORT is taken by a server that refuses postgres/postgres; stop it (e.g. pg_ctlcluster 15 main stop) or set DATABASE_ADMIN_URL"
    fi
    ensure_pg_bin
    if is_root; then
        install -d -m 755 "$STATE_DIR"
        install -d -m 700 -o postgres -g postgres "$PG_DIR" "$PG_DIR/run"
    else
        mkdir -p "$PG_DIR/run"
    fi
    [[ -s "$PGDATA/PG_VERSION" ]] || pg_initdb
    pg_write_conf
    pg_clear_stale_locks
    log "postgres: starting ($("$PG_BIN/postgres" --version), data $PGDATA)"
    # 9>&-: the server must not inherit the lock of this script.
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PG_LOG" -w -t 60 start >/dev/null 9>&-; then
        tail -n 30 "$PG_LOG" >&2 || true
        die "postgres did not start; see $PG_LOG"
    fi
    local i
    for ((i = 0; i < 120; i++)); do
        "$PG_BIN/pg_isready" -q -h localhost -p "$PG_PORT" && break
        sleep 0.25
    done
    "$PG_BIN/pg_isready" -q -h localhost -p "$PG_PORT" || die "postgres not ready; see $PG_LOG"
    log "postgres: ready on localhost:$PG_PORT (pid $(pg_pid), started in $(since "$t0")s)"
}

pg_create_databases() {
    local list missing db
    list="$(printf "'%s'," "${DATABASES[@]}")"
    missing="$(admin_psql -c "SELECT d FROM unnest(ARRAY[${list%,}]) AS d
                              WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = d)")" \
        || die "cannot reach PostgreSQL at $(url_hostport "$PG_ADMIN_URL") as an admin"
    for db in $missing; do
        # As shared/db.py create_database (a cluster made before --lc-collate=C too).
        admin_psql -c "CREATE DATABASE \"$db\" TEMPLATE template0 LC_COLLATE 'C'" >/dev/null
    done
    missing="$(echo $missing)"
    log "postgres: databases present: ${DATABASES[*]} (created: ${missing:-none})"
}

pg_down() {
    local pid
    if ! pid="$(pg_pid)"; then
        log "postgres: not running (nothing started by infra.sh)"
        return 0
    fi
    find_pg_bin || die "PostgreSQL binaries not found"
    log "postgres: stopping pid $pid"
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
    log "postgres: stopped (data kept in $PGDATA)"
}

# ------------------------------------------------------------------ kafka --

# shellcheck source=deploy/local/kafka.sh
. "$HERE/kafka.sh"

# --------------------------------------------------------------- commands --

cmd_up() {
    local t0=$EPOCHREALTIME
    log "up: state in $STATE_DIR"
    need_packages
    # Kafka's JVM boots in the background while PostgreSQL is handled.
    if [[ "$KAFKA_MODE" == local ]]; then
        ensure_kafka_jars
        kafka_start_all
    else
        log "kafka: using the existing Kafka at $KAFKA_BOOTSTRAP (KAFKA_BOOTSTRAP_SERVERS); nothing started"
    fi

    if [[ "$PG_MODE" == local ]]; then
        pg_up
        pg_create_databases
    else
        log "postgres: not provisioned ($PG_EXTERNAL_REASON)"
        if [[ -n "${DATABASE_ADMIN_URL:-}" ]]; then
            pg_create_databases
        else
            warn "postgres: DATABASE_ADMIN_URL not set, databases not created"
        fi
    fi

    if [[ "$KAFKA_MODE" == local ]]; then kafka_wait_ports; fi
    kafka_ready_and_topics
    kafka_scram_user
    log "up: done in $(since "$t0")s"
}

cmd_down() {
    if [[ "$KAFKA_MODE" == local ]]; then kafka_down; else log "kafka: external ($KAFKA_BOOTSTRAP), left alone"; fi
    if [[ "$PG_MODE" == local ]]; then pg_down; else log "postgres: external, left alone"; fi
}

cmd_status() {
    local pid
    if [[ "$KAFKA_MODE" == external ]]; then
        printf '%-9s external  bootstrap=%s (KAFKA_BOOTSTRAP_SERVERS)\n' kafka "$KAFKA_BOOTSTRAP"
    else
        kafka_status
    fi
    if [[ "$PG_MODE" == external ]]; then
        printf '%-9s external  %s\n' postgres "$PG_EXTERNAL_REASON"
    elif pid="$(pg_pid)"; then
        printf '%-9s running   pid=%s port=%s data=%s\n' postgres "$pid" "$PG_PORT" "$PGDATA"
    elif port_open 127.0.0.1 "$PG_PORT"; then
        printf '%-9s running   port=%s (not started by infra.sh)\n' postgres "$PG_PORT"
    else
        printf '%-9s stopped   port=%s\n' postgres "$PG_PORT"
    fi
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
        up | down | status) ;;
        *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
    esac
    if [[ "$cmd" != status ]]; then
        # One `up`/`down` at a time on this machine.
        mkdir -p "$STATE_DIR"
        exec 9>"$STATE_DIR/.infra.lock"
        flock -w 600 9 || die "another infra.sh holds $STATE_DIR/.infra.lock"
    fi
    "cmd_$cmd"
}

main "$@"
