# Local Apache Kafka for deploy/local/infra.sh (sourced, not run): one KRaft node,
# or a cluster of KAFKA_BROKERS nodes on localhost, each both broker and controller,
# from the same jars, with its own ports, log dir, properties and pid file.
#
#   KAFKA_BROKERS=1 (default): node 1 on KAFKA_BOOTSTRAP_SERVERS' port (controller
#       KAFKA_CONTROLLER_PORT, default port + 1); state in $KAFKA_DIR/{data,logs}.
#   KAFKA_BROKERS=N (N > 1): node i on port + 100*(i-1) (controller + 1), or on the
#       ports of KAFKA_BOOTSTRAP_SERVERS when it lists N localhost addresses; state in
#       $KAFKA_DIR/cluster-N/node-i/. Internal topics and the default replication
#       factor are min(3, N); min.insync.replicas 2 from three nodes on.
# The topics are created by `python -m shared.topics create` (partitions: KAFKA_PARTITIONS).

KAFKA_BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:-localhost:9092}"
KAFKA_MODE=local
KAFKA_PORTS=()
IFS=, read -r -a _entries <<<"$KAFKA_BOOTSTRAP"
for _entry in "${_entries[@]}"; do
    if [[ "$_entry" =~ ^(localhost|127\.0\.0\.1):([0-9]+)$ ]]; then
        KAFKA_PORTS+=("${BASH_REMATCH[2]}")
    else
        KAFKA_MODE=external
    fi
done
unset _entries _entry
KAFKA_NODES="${KAFKA_BROKERS:-${#KAFKA_PORTS[@]}}"
[[ "$KAFKA_NODES" =~ ^[1-9][0-9]?$ ]] || die "KAFKA_BROKERS must be a number from 1 to 99"
if [[ "$KAFKA_MODE" == local && "${#KAFKA_PORTS[@]}" -ne "$KAFKA_NODES" ]]; then
    [[ "${#KAFKA_PORTS[@]}" -eq 1 ]] \
        || die "KAFKA_BOOTSTRAP_SERVERS lists ${#KAFKA_PORTS[@]} brokers, KAFKA_BROKERS says $KAFKA_NODES"
    for ((_i = 1; _i < KAFKA_NODES; _i++)); do KAFKA_PORTS+=($((KAFKA_PORTS[0] + 100 * _i))); done
    KAFKA_BOOTSTRAP="$(printf 'localhost:%s,' "${KAFKA_PORTS[@]}")"
    KAFKA_BOOTSTRAP="${KAFKA_BOOTSTRAP%,}"
fi
KAFKA_PORT="${KAFKA_PORTS[0]:-9092}"
KAFKA_CONTROLLER_PORTS=()
for ((_i = 0; _i < ${#KAFKA_PORTS[@]}; _i++)); do
    if ((_i == 0)); then
        KAFKA_CONTROLLER_PORTS+=("${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}")
    else
        KAFKA_CONTROLLER_PORTS+=($((KAFKA_PORTS[_i] + 1)))
    fi
done
unset _i
# KAFKA_SCRAM=1: each node also listens with SASL_PLAINTEXT + SCRAM-SHA-512 on its
# port + 50, for user KAFKA_SCRAM_USER (matchmaking) / KAFKA_SCRAM_PASSWORD, to test
# the clients' security settings (shared.kafka) against a real broker.
KAFKA_SCRAM="${KAFKA_SCRAM:-0}"
KAFKA_SCRAM_USER="${KAFKA_SCRAM_USER:-matchmaking}"
KAFKA_SCRAM_PASSWORD="${KAFKA_SCRAM_PASSWORD:-matchmaking-local-secret}"
KAFKA_RF=$((KAFKA_NODES < 3 ? KAFKA_NODES : 3))
KAFKA_MIN_ISR=$((KAFKA_RF >= 3 ? 2 : 1))

# Node i's directory: the single broker keeps the historical layout.
kafka_node_dir() {
    if ((KAFKA_NODES == 1)); then printf '%s\n' "$KAFKA_DIR"; else printf '%s/cluster-%s/node-%s\n' "$KAFKA_DIR" "$KAFKA_NODES" "$1"; fi
}

KAFKA_JARS=""

# The broker's jars, fetched once per (Kafka version, pom) into a shared cache.
ensure_kafka_jars() {
    local key t0=$EPOCHREALTIME
    key="$KAFKA_VERSION-$(sha256sum "$KAFKA_POM" | cut -c1-12)"
    KAFKA_JARS="$KAFKA_DIR/jars/$key"
    [[ -f "$KAFKA_JARS/.complete" ]] && return 0
    # A second platform's state dir (ports.env) reuses the default one's jars when it has
    # them: the same version and pom give the same files, and no download is needed.
    local shared="${MATCHMAKING_SHARED_JARS:-/var/tmp/matchmaking/kafka/jars}/$key"
    if [[ "$shared" != "$KAFKA_JARS" && -f "$shared/.complete" ]]; then
        mkdir -p "$KAFKA_DIR/jars"
        rm -rf "$KAFKA_JARS.tmp-$$"
        cp -r "$shared" "$KAFKA_JARS.tmp-$$"
        rm -rf "$KAFKA_JARS"
        mv "$KAFKA_JARS.tmp-$$" "$KAFKA_JARS"
        log "kafka: jars copied from $shared ($(since "$t0")s)"
        return 0
    fi
    log "kafka: fetching Apache Kafka $KAFKA_VERSION jars from Maven Central (mvn dependency:copy-dependencies)"
    local tmp="$KAFKA_DIR/jars/.tmp-$key-$$"
    rm -rf "$tmp"
    mkdir -p "$tmp" "$MAVEN_REPO"
    if ! mvn -B -q -Dstyle.color=never -f "$KAFKA_POM" \
            -Dmaven.repo.local="$MAVEN_REPO" \
            "org.apache.maven.plugins:maven-dependency-plugin:$DEPENDENCY_PLUGIN_VERSION:copy-dependencies" \
            -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
        cat "$tmp.log" >&2
        rm -rf "$tmp"
        die "mvn could not fetch the Kafka jars"
    fi
    rm -f "$tmp.log"
    touch "$tmp/.complete"
    rm -rf "$KAFKA_JARS"
    mv "$tmp" "$KAFKA_JARS"
    log "kafka: $(ls "$KAFKA_JARS"/*.jar | wc -l) jars in $KAFKA_JARS ($(since "$t0")s)"
}

# Pid of node $1, if it runs (checked against /proc, not just the pid file).
kafka_pid() {
    local dir pid
    dir="$(kafka_node_dir "$1")"
    [[ -s "$dir/kafka.pid" ]] || return 1
    pid="$(<"$dir/kafka.pid")"
    [[ "$pid" =~ ^[0-9]+$ ]] && pid_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $dir/server.properties" || return 1
    printf '%s\n' "$pid"
}

kafka_write_config() {
    local node="$1" dir voters="" i port="${KAFKA_PORTS[$1 - 1]}" sasl="" sasl_map="" sasl_conf=""
    dir="$(kafka_node_dir "$node")"
    if [[ "$KAFKA_SCRAM" == 1 ]]; then
        sasl=",SASL_PLAINTEXT://localhost:$((port + 50))"
        sasl_map=",SASL_PLAINTEXT:SASL_PLAINTEXT"
        sasl_conf="sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
    fi
    for ((i = 0; i < KAFKA_NODES; i++)); do voters+="$((i + 1))@localhost:${KAFKA_CONTROLLER_PORTS[i]},"; done
    cp "$HERE/kafka/log4j.properties" "$dir/log4j.properties"
    cat >"$dir/server.properties" <<EOP
# Written by deploy/local/infra.sh (deploy/local/kafka.sh) at each start: edit that instead.
# Node $node of $KAFKA_NODES, each both broker and KRaft controller.
process.roles=broker,controller
node.id=$node
controller.quorum.voters=${voters%,}
listeners=PLAINTEXT://localhost:$port,CONTROLLER://localhost:${KAFKA_CONTROLLER_PORTS[node - 1]}$sasl
advertised.listeners=PLAINTEXT://localhost:$port$sasl
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT$sasl_map
$sasl_conf
log.dirs=$dir/data

# Replication: min(3, nodes) copies; with 3, an acks=all write needs 2 of them.
offsets.topic.replication.factor=$KAFKA_RF
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$KAFKA_RF
transaction.state.log.min.isr=$KAFKA_MIN_ISR
transaction.state.log.num.partitions=10
default.replication.factor=$KAFKA_RF
min.insync.replicas=$KAFKA_MIN_ISR
unclean.leader.election.enable=false

num.partitions=${KAFKA_PARTITIONS:-6}
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
EOP
}

kafka_start() {
    local node="$1" pid dir port="${KAFKA_PORTS[$1 - 1]}"
    dir="$(kafka_node_dir "$node")"
    if pid="$(kafka_pid "$node")"; then
        log "kafka: node $node already running (pid $pid, port $port)"
        return 0
    fi
    if port_open 127.0.0.1 "$port"; then
        # A cluster's nodes must all be ours: a stranger (another platform's single broker,
        # possibly with this cluster id) would be asked to join a quorum it is not part of.
        ((KAFKA_NODES == 1)) || die "kafka: port $port is taken by a process infra.sh did not start for this $KAFKA_NODES-node cluster; use other ports (deploy/local/ports.env)"
        log "kafka: reusing the broker already listening on localhost:$port (not started by infra.sh)"
        return 0
    fi
    rm -f "$dir/kafka.pid"
    mkdir -p "$dir/data" "$dir/logs"
    kafka_write_config "$node"
    if [[ ! -f "$dir/data/meta.properties" ]]; then
        log "kafka: formatting node $node's storage $dir/data (cluster id $KAFKA_CLUSTER_ID)"
        java "${TOOL_JAVA_OPTS[@]}" -cp "$KAFKA_JARS/*" kafka.tools.StorageTool format \
            -t "$KAFKA_CLUSTER_ID" -c "$dir/server.properties" --ignore-formatted >/dev/null
    fi
    log "kafka: starting node $node of $KAFKA_NODES, Apache Kafka $KAFKA_VERSION (KRaft), on localhost:$port, log $dir/logs/server.log"
    # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of options
    setsid nohup java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} \
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dkafka.logs.dir="$dir/logs" -Dlog4j.configuration="file:$dir/log4j.properties" \
        -cp "$KAFKA_JARS/*" kafka.Kafka "$dir/server.properties" \
        </dev/null >>"$dir/logs/kafka.out" 2>&1 9>&- &
    echo $! >"$dir/kafka.pid"
    KAFKA_STARTED_AT=$EPOCHREALTIME
}

kafka_start_all() {
    local node port
    if ((KAFKA_NODES > 1)); then  # check every port before starting any node
        for ((node = 1; node <= KAFKA_NODES; node++)); do
            port="${KAFKA_PORTS[node - 1]}"
            kafka_pid "$node" >/dev/null || ! port_open 127.0.0.1 "$port" \
                || die "kafka: port $port is taken by a process infra.sh did not start for this $KAFKA_NODES-node cluster; use other ports (deploy/local/ports.env)"
        done
    fi
    for ((node = 1; node <= KAFKA_NODES; node++)); do kafka_start "$node"; done
}

kafka_wait_ports() {
    local i node pid dir port
    [[ -n "${KAFKA_STARTED_AT:-}" ]] || return 0
    for ((node = 1; node <= KAFKA_NODES; node++)); do
        dir="$(kafka_node_dir "$node")"
        port="${KAFKA_PORTS[node - 1]}"
        [[ -s "$dir/kafka.pid" ]] || continue
        pid="$(<"$dir/kafka.pid")"
        for ((i = 0; i < 360; i++)); do
            port_open 127.0.0.1 "$port" && break
            if ! pid_alive "$pid"; then
                tail -n 30 "$dir/logs/kafka.out" "$dir/logs/server.log" >&2 2>/dev/null || true
                rm -f "$dir/kafka.pid"
                die "kafka node $node exited during startup; see $dir/logs"
            fi
            sleep 0.25
        done
        port_open 127.0.0.1 "$port" || die "kafka: port $port not open after 90s; see $dir/logs"
        log "kafka: node $node's port $port open (pid $pid, $(since "$KAFKA_STARTED_AT")s after start)"
    done
}

# Waits until the cluster serves (topics with leaders, group coordinator) and creates
# the missing topics: `python -m shared.topics create`, with the clients' settings.
kafka_ready_and_topics() {
    local t0=$EPOCHREALTIME python="$HERE/../../.venv/bin/python"
    [[ -x "$python" ]] || die "no .venv: run \`make venv\` first (topics are created from Python)"
    (cd "$HERE/../.." && KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP" TOPIC_PREFIX="" \
        "$python" -m shared.topics create --timeout 180) \
        || die "kafka at $KAFKA_BOOTSTRAP is not ready or the topics could not be created"
    log "kafka: readiness check and topics took $(since "$t0")s"
}

# KAFKA_SCRAM=1: the SCRAM user's credentials (idempotent: set again at each `up`).
kafka_scram_user() {
    [[ "$KAFKA_SCRAM" == 1 && "$KAFKA_MODE" == local ]] || return 0
    java "${TOOL_JAVA_OPTS[@]}" -cp "$KAFKA_JARS/*" kafka.admin.ConfigCommand \
        --bootstrap-server "$KAFKA_BOOTSTRAP" --alter --entity-type users \
        --entity-name "$KAFKA_SCRAM_USER" \
        --add-config "SCRAM-SHA-512=[iterations=4096,password=$KAFKA_SCRAM_PASSWORD]" >/dev/null \
        || die "kafka: could not set the SCRAM credentials of $KAFKA_SCRAM_USER"
    log "kafka: SCRAM-SHA-512 user $KAFKA_SCRAM_USER on ports +50 (SASL_PLAINTEXT)"
}

# Stops every node at once: one by one, the last node would wait 30 s for a controller
# quorum that left with the others before it could shut down cleanly.
kafka_down() {
    local node pid i pids=() nodes=()
    for ((node = 1; node <= KAFKA_NODES; node++)); do
        if pid="$(kafka_pid "$node")"; then
            log "kafka: stopping node $node, pid $pid"
            kill -TERM "$pid"
            pids+=("$pid")
            nodes+=("$node")
        else
            rm -f "$(kafka_node_dir "$node")/kafka.pid"
            log "kafka: node $node not running (nothing started by infra.sh)"
        fi
    done
    for ((i = 0; i < 120; i++)); do
        local running=0
        for pid in "${pids[@]}"; do pid_alive "$pid" && running=1; done
        ((running)) || break
        sleep 0.25
    done
    for i in "${!pids[@]}"; do
        if pid_alive "${pids[i]}"; then
            warn "kafka: node ${nodes[i]} still running after 30s, sending SIGKILL"
            kill -KILL "${pids[i]}" || true
        fi
        rm -f "$(kafka_node_dir "${nodes[i]}")/kafka.pid"
        log "kafka: node ${nodes[i]} stopped (data kept in $(kafka_node_dir "${nodes[i]}")/data)"
    done
}

kafka_status() {
    local node pid dir port
    for ((node = 1; node <= KAFKA_NODES; node++)); do
        dir="$(kafka_node_dir "$node")"
        port="${KAFKA_PORTS[node - 1]}"
        if pid="$(kafka_pid "$node")"; then
            printf '%-9s running   node=%s/%s pid=%s port=%s version=%s log=%s\n' kafka "$node" \
                "$KAFKA_NODES" "$pid" "$port" "$KAFKA_VERSION" "$dir/logs/server.log"
        elif port_open 127.0.0.1 "$port"; then
            printf '%-9s running   node=%s/%s port=%s (not started by infra.sh)\n' kafka "$node" "$KAFKA_NODES" "$port"
        else
            printf '%-9s stopped   node=%s/%s port=%s\n' kafka "$node" "$KAFKA_NODES" "$port"
        fi
    done
}
