# Sourced by redis.sh and sentinel.sh: the current primary, as the first Sentinel that
# answers names it (FIRST, redis-0, when none does: the StatefulSet's first start).
# The defaults are the StatefulSet's; tests/test_kubernetes.py runs the scripts on
# loopback addresses by setting them.
PEERS=${PEERS:-"redis-0.redis-headless redis-1.redis-headless redis-2.redis-headless"}
ME=${ME:-"$HOSTNAME.redis-headless"}
FIRST=${FIRST:-"redis-0.redis-headless"}
REDIS_PORT=${REDIS_PORT:-6379}
SENTINEL_PORT=${SENTINEL_PORT:-26379}

discover() {
    for peer in $PEERS; do
        found=$(REDISCLI_AUTH="$SENTINEL_PASSWORD" timeout 3 redis-cli --no-auth-warning \
            -h "$peer" -p "$SENTINEL_PORT" --raw SENTINEL GET-MASTER-ADDR-BY-NAME mymaster \
            2>/dev/null | head -n 1) || found=""
        case "$found" in
            "" | *ERR* | *NOAUTH* | *WRONGPASS*) ;;
            *) echo "$found"; return 0 ;;
        esac
    done
    echo "$FIRST"
}
