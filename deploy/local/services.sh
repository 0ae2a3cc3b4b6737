#!/usr/bin/env bash
# Start, stop and show the five service processes of a local platform, and the web portal.
#   deploy/local/services.sh up|down|status
# Each runs as `python -m services.<name>` from the repository, logging to
# var/log/<name>.log; `up` returns when every service reports ready.
set -euo pipefail

cd "$(dirname "$0")/../.."
SERVICES=(registration matching scheduling notification reporting portal)
declare -A PORT=([registration]=8001 [matching]=8002 [scheduling]=8003 [notification]=8004 [reporting]=8000 [portal]=8005)
RUN=var/run
LOG=var/log
mkdir -p "$RUN" "$LOG"

alive() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

port_of() {
  local var="${1^^}_PORT"
  echo "${!var:-${PORT[$1]}}"
}

# A local mail catcher so notification has an SMTP server to deliver to; the
# messages it receives are printed to var/log/mail.log. Skipped when SMTP_HOST
# points at a real server.
mail_up() {
  [[ -n "${SMTP_HOST:-}" && "${SMTP_HOST}" != "localhost" && "${SMTP_HOST}" != "127.0.0.1" ]] \
    && return 0
  if alive mail; then return 0; fi
  nohup .venv/bin/python -m aiosmtpd -n -l "127.0.0.1:${SMTP_PORT:-1025}" >>"$LOG/mail.log" 2>&1 &
  echo $! >"$RUN/mail.pid"
  echo "mail: catcher started on 127.0.0.1:${SMTP_PORT:-1025} (messages in $LOG/mail.log)"
}

up() {
  mail_up
  # Feedback invitations link to the portal's rating page (reporting reads this).
  export PORTAL_PUBLIC_URL="${PORTAL_PUBLIC_URL:-http://127.0.0.1:$(port_of portal)}"
  for name in "${SERVICES[@]}"; do
    if alive "$name"; then
      echo "$name: already running (pid $(cat "$RUN/$name.pid"))"
      continue
    fi
    nohup .venv/bin/python -m "services.$name" >>"$LOG/$name.log" 2>&1 &
    echo $! >"$RUN/$name.pid"
    echo "$name: started (pid $!, port $(port_of "$name"), log $LOG/$name.log)"
  done
  local deadline=$((SECONDS + 90))
  for name in "${SERVICES[@]}"; do
    until curl -fsS "http://127.0.0.1:$(port_of "$name")/ready" >/dev/null 2>&1; do
      if ! alive "$name"; then
        echo "$name: exited; last lines of $LOG/$name.log:" >&2
        tail -n 30 "$LOG/$name.log" >&2
        exit 1
      fi
      if ((SECONDS > deadline)); then
        echo "$name: not ready after 90 s; see $LOG/$name.log" >&2
        exit 1
      fi
      sleep 0.5
    done
    echo "$name: ready on http://127.0.0.1:$(port_of "$name")"
  done
}

down() {
  for name in "${SERVICES[@]}" mail; do
    if alive "$name"; then
      local pid
      pid=$(cat "$RUN/$name.pid")
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
      echo "$name: stopped"
    fi
    rm -f "$RUN/$name.pid"
  done
}

status() {
  for name in "${SERVICES[@]}"; do
    if alive "$name"; then
      local ready="not ready"
      curl -fsS "http://127.0.0.1:$(port_of "$name")/ready" >/dev/null 2>&1 && ready="ready"
      printf '%-13s running   pid=%s port=%s %s\n' "$name" "$(cat "$RUN/$name.pid")" \
        "$(port_of "$name")" "$ready"
    else
      printf '%-13s stopped   port=%s\n' "$name" "$(port_of "$name")"
    fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
