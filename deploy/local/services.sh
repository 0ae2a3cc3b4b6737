#!/usr/bin/env bash
# Start, stop and show the five service processes of a local platform, and the web portal.
#   deploy/local/services.sh up|down|status
# Each runs as `python -m services.<name>` from the repository, under a supervisor
# (scripts/supervise.py) that starts it again when it exits, logging to
# var/log/<name>.log; `up` returns when every service reports ready.
#
# REPLICAS=N (default 1) runs N replicas of each of the five services: replica r
# (0-based) listens on the service's port + 100*r, has REPLICA_ID=r (its consumers'
# member ids), and is named <name> (r = 0) or <name>-<r> in var/run and var/log.
# The portal and the mail catcher run once. A process counts as running only if
# /proc shows it alive and not a zombie.
set -euo pipefail

cd "$(dirname "$0")/../.."
SERVICES=(registration matching scheduling notification reporting)
declare -A PORT=([registration]=8001 [matching]=8002 [scheduling]=8003 [notification]=8004 [reporting]=8000 [portal]=8005)
REPLICAS="${REPLICAS:-1}"
[[ "$REPLICAS" =~ ^[1-9]$ ]] || { echo "REPLICAS must be 1 to 9" >&2; exit 2; }
RUN=var/run
LOG=var/log
mkdir -p "$RUN" "$LOG"

# Alive: the pid exists and is not a zombie (kill -0 succeeds on a zombie, which a
# late-reaping PID 1 leaves behind after a SIGKILL).
pid_alive() {
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

alive() { [[ -s "$RUN/$1.pid" ]] && pid_alive "$(cat "$RUN/$1.pid")"; }

port_of() {
  local var="${1^^}_PORT"
  echo "${!var:-${PORT[$1]}}"
}

# Every process to run: "<instance> <service> <replica>".
instances() {
  local name r
  for name in "${SERVICES[@]}"; do
    for ((r = 0; r < REPLICAS; r++)); do
      if ((r == 0)); then echo "$name $name 0"; else echo "$name-$r $name $r"; fi
    done
  done
  echo "portal portal 0"
}

# A local mail catcher so notification has an SMTP server to deliver to; the
# messages it receives are printed to var/log/mail.log (and indexed, with the time
# each arrived, in var/log/mail.jsonl). Skipped when SMTP_HOST
# points at a real server.
mail_up() {
  [[ -n "${SMTP_HOST:-}" && "${SMTP_HOST}" != "localhost" && "${SMTP_HOST}" != "127.0.0.1" ]] \
    && return 0
  if alive mail; then return 0; fi
  # scripts.mail_catcher: aiosmtpd's printing handler that also notes when each
  # message arrived, in var/log/mail.jsonl (make bench-event reads it).
  # -u: SMTPUTF8, as real servers offer, for addresses such as contact@gdańsk….example.
  nohup .venv/bin/python -m aiosmtpd -n -u -l "127.0.0.1:${SMTP_PORT:-1025}" \
    -c scripts.mail_catcher.StampingDebugging "$LOG/mail.jsonl" >>"$LOG/mail.log" 2>&1 &
  echo $! >"$RUN/mail.pid"
  echo "mail: catcher started on 127.0.0.1:${SMTP_PORT:-1025} (messages in $LOG/mail.log)"
}

start() {
  local instance="$1" service="$2" replica="$3" port
  port=$(($(port_of "$service") + 100 * replica))
  (
    export "${service^^}_PORT=$port" REPLICA_ID="$replica"
    setsid nohup .venv/bin/python -m scripts.supervise --name "$instance" \
      --child-pidfile "$RUN/$instance.child.pid" -- .venv/bin/python -m "services.$service" \
      </dev/null >>"$LOG/$instance.log" 2>&1 &
    echo $! >"$RUN/$instance.pid"
  )
  echo "$instance: started under a supervisor (pid $(cat "$RUN/$instance.pid"), port $port, log $LOG/$instance.log)"
}

up() {
  mail_up
  # Feedback invitations link to the portal's rating page (reporting reads this).
  export PORTAL_PUBLIC_URL="${PORTAL_PUBLIC_URL:-http://127.0.0.1:$(port_of portal)}"
  local instance service replica port
  while read -r instance service replica; do
    if alive "$instance"; then
      echo "$instance: already running (supervisor pid $(cat "$RUN/$instance.pid"))"
    else
      start "$instance" "$service" "$replica"
    fi
  done < <(instances)
  local deadline=$((SECONDS + ${READY_TIMEOUT:-120}))
  while read -r instance service replica; do
    port=$(($(port_of "$service") + 100 * replica))
    until curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do
      if ! alive "$instance"; then
        echo "$instance: its supervisor exited; last lines of $LOG/$instance.log:" >&2
        tail -n 30 "$LOG/$instance.log" >&2
        exit 1
      fi
      if ((SECONDS > deadline)); then
        echo "$instance: not ready after ${READY_TIMEOUT:-120} s; see $LOG/$instance.log" >&2
        tail -n 10 "$LOG/$instance.log" >&2
        exit 1
      fi
      sleep 0.5
    done
    echo "$instance: ready on http://127.0.0.1:$port"
  done < <(instances)
}

stop_pid() {
  local pid="$1"
  pid_alive "$pid" || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 75); do pid_alive "$pid" || return 0; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
}

down() {
  local f instance
  # Whatever has a pid file, whatever REPLICAS was at `up`.
  for f in "$RUN"/*.pid; do
    [[ -e "$f" && "$f" != *.child.pid ]] || continue
    instance="$(basename "$f" .pid)"
    if alive "$instance"; then
      stop_pid "$(cat "$f")"
      echo "$instance: stopped"
    fi
    # A supervisor killed with -9 leaves its child behind.
    if [[ -s "$RUN/$instance.child.pid" ]]; then stop_pid "$(cat "$RUN/$instance.child.pid")"; fi
    rm -f "$f" "$RUN/$instance.child.pid"
  done
}

status() {
  local instance service replica port child ready
  while read -r instance service replica; do
    port=$(($(port_of "$service") + 100 * replica))
    if alive "$instance"; then
      ready="not ready"
      curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && ready="ready"
      child="$(cat "$RUN/$instance.child.pid" 2>/dev/null || echo -)"
      printf '%-15s running   supervisor=%s pid=%s port=%s %s\n' "$instance" \
        "$(cat "$RUN/$instance.pid")" "$child" "$port" "$ready"
    else
      printf '%-15s stopped   port=%s\n' "$instance" "$port"
    fi
  done < <(instances)
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
