#!/bin/sh
# A Sentinel: it watches the primary the other Sentinels name (redis-0 at the first
# start) and learns the rest from it. Names, not addresses: a pod's address changes
# when it is rescheduled, its name does not.
set -eu
. "${SCRIPTS:-/scripts}/discover.sh"
dir=${SENTINEL_DIR:-/sentinel}
primary=$(discover)
cat > "$dir/sentinel.conf" <<CONF
port $SENTINEL_PORT
dir $dir
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $ME
sentinel monitor mymaster $primary $REDIS_PORT 2
sentinel auth-pass mymaster "$REDIS_PASSWORD"
sentinel down-after-milliseconds mymaster 5000
sentinel failover-timeout mymaster 60000
sentinel parallel-syncs mymaster 1
requirepass "$SENTINEL_PASSWORD"
sentinel sentinel-pass "$SENTINEL_PASSWORD"
CONF
if [ -n "${SENTINEL_BIND:-}" ]; then  # the pod's every address, unless told
    echo "bind $SENTINEL_BIND" >> "$dir/sentinel.conf"
fi
exec redis-server "$dir/sentinel.conf" --sentinel
