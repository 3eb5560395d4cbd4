# Sourced by redis.sh and sentinel.sh: the current primary, as the first Sentinel that
# answers names it (nothing when none does: the StatefulSet is starting for the first
# time, and redis-0 is the primary).
PEERS="redis-0.redis-headless redis-1.redis-headless redis-2.redis-headless"
ME="$HOSTNAME.redis-headless"

discover() {
    for peer in $PEERS; do
        found=$(REDISCLI_AUTH="$SENTINEL_PASSWORD" timeout 3 redis-cli --no-auth-warning \
            -h "$peer" -p 26379 --raw SENTINEL GET-MASTER-ADDR-BY-NAME mymaster 2>/dev/null \
            | head -n 1) || found=""
        case "$found" in
            "" | *ERR* | *NOAUTH* | *WRONGPASS*) ;;
            *) echo "$found"; return 0 ;;
        esac
    done
    echo "redis-0.redis-headless"
}
