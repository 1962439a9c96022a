#!/usr/bin/env bash
# Runs the curl lines of the README's "Using the server" block as a user
# would: as written, in order, in an empty scratch directory, against a
# daemon serving config/gmserve.json's models (on a free port instead of
# 8080). Every curl must get a 2xx; the first that does not fails the run,
# naming its line. Usage: tests/readme_curl.sh GMSERVE_BINARY
set -euo pipefail
bin=$(realpath "${1:?usage: readme_curl.sh GMSERVE_BINARY}")
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
log="$scratch.log"
pid=
cleanup() {
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$scratch"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# the block: from the first ```sh after "## Using the server" to its closing ```
awk '/^## Using the server/ {s = 1} s && /^```sh$/ {b = 1; next} b && /^```$/ {exit} b' "$root/README.md" |
    sed "s/127\.0\.0\.1:8080/127.0.0.1:$port/g" >"$scratch.sh"
[ -s "$scratch.sh" ] || { echo "readme_curl: no curl block under '## Using the server' in README.md" >&2; exit 1; }

(cd "$root" && exec "$bin" --config config/gmserve.json --listen "127.0.0.1:$port" --log-format off) 2>"$log" &
pid=$!
for _ in $(seq 300); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
done

# each curl of the block reports its status; a non-2xx stops the block
cat >"$scratch.run" <<'WRAP'
curl() {
    local code
    code=$(command curl -sS -w '\n%{http_code}' "$@" | tail -n 1)
    echo "readme_curl: $code  curl $*" | cut -c 1-160
    case $code in 2??) ;; *) echo "readme_curl: that README line got $code" >&2; return 1 ;; esac
}
set -e
WRAP
cat "$scratch.sh" >>"$scratch.run"
(cd "$scratch" && bash "$scratch.run")
rm -f "$scratch.sh" "$scratch.run" "$log"
