#!/usr/bin/env bash
# pd-relay: the whole stack with one command.
#
#   ./start.sh             start Redis, ingress nodes, a worker per routing key and nginx
#                          on :8080; run again, it applies every change (keys, settings,
#                          node count), restarting what changed one process at a time
#   ./start.sh --demo      the same against the bundled PagerDuty simulator, generated keys
#   ./start.sh status [--json]   what runs, and each key's queue and delivery figures
#   ./start.sh reload      apply a changed keys file, with the settings it was started with
#   ./start.sh logs [PROCESS] [-n N] [-f]    the logs, of one process or all
#   ./start.sh stop        stop everything it started
#   ./start.sh relay ARGS  run `pd-relay ARGS` against the running stack
#   ./start.sh --role ROLE ...   one of several hosts (README: Running on several machines)
#
# This script only sets up a virtualenv in .venv (pd-relay and supervisor), then runs
# `pd-relay stack ...`, which does the rest. Its options are PD_RELAY_* and RELAY_*
# environment variables: see the README's Configuration. Run as root, the virtualenv is
# $PD_RELAY_SYSTEM_DIR/venv (default /var/lib/pd-relay/venv), readable by the
# unprivileged user the stack runs as (PD_RELAY_USER, default pd-relay).
set -euo pipefail
umask 077  # run/, data/ and .venv for this user only: logs and Redis's data hold events
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
python=${PYTHON:-python3}
venv=$here/.venv
run_dir=${PD_RELAY_RUN_DIR:-$here/run}

action=up
demo=()
case "${1:-}" in
  ""|start) ;;
  --demo) demo=(--demo) ;;
  --role) ;;  # several hosts: the roles and their options go to `pd-relay stack up`
  stop) action=down ;;
  status|reload|logs|relay) action=$1 ;;
  -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "pd-relay: unknown argument: $1 (./start.sh --help)" >&2; exit 2 ;;
esac
[ $# -gt 0 ] && [ "$1" != --role ] && shift
if [ "$action" = up ]; then
  [ "${1:-}" = --demo ] && demo=(--demo) && shift
  [ $# -eq 0 ] || [ "$1" = --role ] \
    || { echo "pd-relay: unknown argument: $1 (./start.sh --help)" >&2; exit 2; }
  # a keys file without keys: say so before installing (a host without the relay has none)
  if [ ${#demo[@]} -eq 0 ] && { [ $# -eq 0 ] || [[ " $* " == *" --role relay "* ]]; }; then
    PYTHONPATH=$here "$python" -m relay.stack.keycheck \
      "${RELAY_KEYS_FILE:-$here/pd_routing_keys.txt}" || exit 1
  fi
fi

stamp=.installed-run
if [ "$(id -u)" = 0 ]; then  # the stack runs as an unprivileged user, who may not read
  # this directory: pd-relay is installed (not editable, again when its source changes)
  # into the system directory's venv, readable by all, on a Python that user may run
  system=${PD_RELAY_SYSTEM_DIR:-/var/lib/pd-relay} venv=$system/venv log=$system/pip.log
  install=("$here[run]") stamp=$venv/$stamp
  [ -n "${PYTHON:-}" ] || ! /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    2>/dev/null || python=/usr/bin/python3
  fresh=$(find pyproject.toml relay worker simulator -newer "$stamp" -print -quit 2>&1 || true)
else
  system="" log=$run_dir/logs/pip.log install=(-e "$here[run]") stamp=$venv/$stamp
  fresh=$([ pyproject.toml -nt "$stamp" ] && echo changed || true)
fi
if [ ! -x "$venv/bin/pd-relay" ] || [ ! -f "$stamp" ] || [ -n "$fresh" ]; then
  echo "pd-relay: installing pd-relay and supervisor into $venv" >&2
  ( [ -z "$system" ] || { umask 022; rm -rf "$here/build"; }  # no stale file in the wheel
    mkdir -p "$(dirname "$log")"
    { [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"; } > "$log" 2>&1
    { "$venv/bin/python" -m pip install --upgrade pip \
        && "$venv/bin/python" -m pip install "${install[@]}" \
        && { [ -z "$system" ] || "$venv/bin/python" -m pip install --no-deps --force-reinstall \
               "$here"; }; } >> "$log" 2>&1 ) \
    || { tail -n 20 "$log" >&2; echo "pd-relay: pip install failed; see $log" >&2; exit 1; }
  touch "$stamp"
fi
PD_RELAY_HOME=$here exec "$venv/bin/pd-relay" stack "$action" "${demo[@]}" "$@"
