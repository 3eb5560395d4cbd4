#!/bin/sh
# A Redis data node: a replica of the primary the Sentinels name (redis-0 at the first
# start); the primary itself when that is this pod. Every node refuses writes without
# MIN_REPLICAS replicas in sync (a replica too: Sentinel may promote it), so a primary
# cut off from the others answers the relay with an error, never a lost 202. The flags
# (append-only file, noeviction, ...) are the StatefulSet's arguments: relay/stack/render.py's.
set -eu
. "${SCRIPTS:-/scripts}/discover.sh"
conf=${CONF_DIR:-/conf}/redis.conf
primary=$(discover)
{
    echo "requirepass \"$REDIS_PASSWORD\""
    echo "masterauth \"$REDIS_PASSWORD\""
    echo "replica-announce-ip $ME"
    echo "min-replicas-to-write ${MIN_REPLICAS:-1}"
    echo "min-replicas-max-lag 10"
    if [ "$primary" != "$ME" ]; then
        echo "replicaof $primary $REDIS_PORT"
    fi
} > "$conf"
exec redis-server "$conf" "$@"
