#!/bin/sh
# Runs nginx and reloads it when a gmserve replica comes back at a new
# address. nginx (1.22, Debian bookworm) resolves upstream names only when it
# loads its config, and a restarted container may get a new IP: without a
# reload, the replica would never rejoin. The names are the upstream servers
# of nginx.conf; a reload happens only when all of them resolve (while one is
# down, nginx keeps the old config and its max_fails marks the replica down).
# A reload is graceful: old workers finish their requests.
set -u
conf=/etc/nginx/nginx.conf
names=$(sed -n 's/^ *server \([A-Za-z0-9_.-]*\):[0-9]*.*/\1/p' "$conf")
count=$(echo "$names" | wc -w)
resolve() { getent hosts $names | awk '{print $2, $1}' | sort; }

nginx -g 'daemon off;' &
pid=$!
trap 'kill -QUIT $pid; wait $pid; exit 0' TERM QUIT INT
last=$(resolve)
while kill -0 $pid 2>/dev/null; do
    sleep 1 & wait $!
    now=$(resolve)
    if [ "$now" != "$last" ] && [ "$(echo "$now" | grep -c .)" -eq "$count" ]; then
        echo "nginx-entrypoint: upstream addresses changed, reloading: $(echo $now)" >&2
        nginx -s reload && last=$now
    fi
done
wait $pid
