#!/bin/sh
# A Sentinel: it watches the primary the other Sentinels name (redis-0 at the first
# start) and learns the rest from it. Names, not addresses: a pod's address changes
# when it is rescheduled, its name does not.
set -eu
. /scripts/discover.sh
primary=$(discover)
cat > /sentinel/sentinel.conf <<CONF
port 26379
dir /sentinel
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $ME
sentinel monitor mymaster $primary 6379 2
sentinel auth-pass mymaster "$REDIS_PASSWORD"
sentinel down-after-milliseconds mymaster 5000
sentinel failover-timeout mymaster 60000
sentinel parallel-syncs mymaster 1
requirepass "$SENTINEL_PASSWORD"
sentinel sentinel-pass "$SENTINEL_PASSWORD"
CONF
exec redis-server /sentinel/sentinel.conf --sentinel
