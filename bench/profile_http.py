#!/usr/bin/env python3
"""make profile-http: where the daemon's CPU goes for one request type.

Starts build/gmserve (defaults, OPENBLAS_NUM_THREADS=1) with the bundled
models, drives POST /v1/models/vae/encode of one PNG (or PROFILE_PATH with
PROFILE_BODY: "vae.png", "nade.png" or a JSON text) at concurrency
PROFILE_C (64) with wrk, and records the daemon with `perf record` for
PROFILE_SECONDS (4) in the middle of the load. Each sample is put in a
category by its thread and the function it was in (the leaf: malloc,
memset and printf are counted where they run, not where they were called
from), and the table gives each category's share of the samples and its
microseconds of CPU per request (the share times the daemon's CPU time per
request, utime + stime from /proc over the same window). The HTTP thread
is libmicrohttpd's ("MHD-worker"); the compute workers are the rest.

Needs perf (linux-perf) and wrk; standard library only.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
HERE = os.path.dirname(os.path.abspath(__file__))
C = int(os.environ.get("PROFILE_C", "64"))
SECS = int(os.environ.get("PROFILE_SECONDS", "4"))
PATH = os.environ.get("PROFILE_PATH", "/v1/models/vae/encode")
BODY = os.environ.get("PROFILE_BODY", "vae.png")
TOP = int(os.environ.get("PROFILE_TOP", "0"))  # also list the TOP hottest functions
CLK_TCK = os.sysconf("SC_CLK_TCK")

# (category, thread is HTTP?, regex on "dso symbol"); first match wins
RULES = [
    ("model: OpenBLAS", None, r"libopenblas"),
    ("JSON: number formatting", None, r"printf|hack_digit|__mpn_|strchrnul|parse_one_spec|localeconv|_IO_|"
                                      r"float_shortest|reads_back|digits_of|\bmultiple\b|strtof|strtod|round_and_return"),
    ("JSON: jansson and writer", None, r"libjansson|gm_jw|json_"),
    ("PNG decode and encode (libpng, zlib, ours)", None, r"libpng|libz|png|inflate|adler32|crc32"),
    ("malloc/free", None, r"malloc|_int_free|\bfree\b|cfree|calloc|realloc|unlink_chunk|tcache|arena_|consolidate"),
    ("libmicrohttpd (pool memset)", True, r"memset"),
    ("libmicrohttpd", True, r"libmicrohttpd"),
    ("kernel, HTTP thread (sockets, epoll)", True, r"kernel"),
    ("kernel, workers (wake-ups, futex)", False, r"kernel"),
    ("memset/memcpy, workers", False, r"memset|memmove|memcpy"),
    ("model: gmserve core", False, r"gmserve"),
]


def die(msg):
    print("profile-http: " + msg, file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def category(comm, where):
    http = comm.startswith("MHD")
    for name, thread, rx in RULES:
        if (thread is None or thread == http) and re.search(rx, where):
            return name
    return "other, HTTP thread" if http else "other, workers"


def main():
    tmp = tempfile.mkdtemp(prefix="profile-http-")
    empty = os.path.join(tmp, "empty.json")
    with open(empty, "w") as f:
        f.write("{}\n")
    port = free_port()
    models = sum((["--model", f"{k}={os.path.join(HERE, '..', 'models', k + '.safetensors')}"]
                  for k in ("nade", "vae", "gan")), [])
    log = open(os.path.join(tmp, "gmserve.log"), "w")
    proc = subprocess.Popen([os.path.join(BUILD, "gmserve"), "--config", empty, "--listen", f"127.0.0.1:{port}",
                             "--log-format", "off"] + models, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"),
                            stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/readyz", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            die("the daemon did not start")
        if BODY.endswith(".png"):
            body = urllib.request.urlopen(f"{base}/sample?model={BODY[:-4]}&seed=1").read()
            ctype = "image/png"
        else:
            body, ctype = BODY.encode(), "application/json"
        with open(os.path.join(tmp, "body"), "wb") as f:
            f.write(body)
        script = os.path.join(tmp, "post.lua")
        with open(script, "w") as f:
            f.write('wrk.method = "POST"\nlocal f = io.open(os.getenv("BODY_FILE"), "rb")\n'
                    'wrk.body = f:read("*all")\nf:close()\nwrk.headers["Content-Type"] = os.getenv("BODY_TYPE")\n')
        env = dict(os.environ, BODY_FILE=os.path.join(tmp, "body"), BODY_TYPE=ctype)
        load = subprocess.Popen(["wrk", "-t2", f"-c{C}", f"-d{SECS + 2}s", "-s", script, base + PATH], env=env,
                                stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        data = os.path.join(tmp, "perf.data")
        stats_before = urllib.request.urlopen(base + "/metrics").read().decode()
        t0 = cpu_seconds(proc.pid)
        subprocess.run(["perf", "record", "-q", "-F", "1999", "-p", str(proc.pid), "-o", data, "--", "sleep",
                        str(SECS)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        cpu = cpu_seconds(proc.pid) - t0
        stats_after = urllib.request.urlopen(base + "/metrics").read().decode()
        load.communicate()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    def requests(text):
        return sum(float(m.group(1)) for m in re.finditer(r'^gmserve_requests_total\{[^}]*\} (\S+)$', text, re.M))
    n = requests(stats_after) - requests(stats_before)
    if n <= 0:
        die("no requests were counted (gmserve_requests_total)")
    report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "comm,dso,sym", "-g", "none",
                             "--stdio", "--percent-limit", "0"], capture_output=True, text=True).stdout
    share, hottest = {}, []
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(\S+)\s+\[.\]\s+(.*)$", line)
        if m:
            pct, comm, dso, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()
            c = category(comm, f"{dso} {sym}")
            share[c] = share.get(c, 0.0) + pct
            hottest.append((pct, comm, dso, sym, c))
    per_req = cpu / n * 1e6
    print(f"profile-http: POST {PATH} at concurrency {C}: {n / SECS:.0f} req/s, {per_req:.1f} µs of daemon CPU "
          f"per request, {sum(share.values()):.0f}% of samples placed\n")
    print("| where | share of samples | µs per request |")
    print("|---|---|---|")
    for name, pct in sorted(share.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {pct:.1f} % | {pct / 100 * per_req:.1f} |")
    model = sum(pct for name, pct in share.items() if name.startswith("model:")) / 100 * per_req
    print(f"\nthe model {model:.1f} µs per request, the rest (HTTP, queue, decoding, replies) "
          f"{per_req - model:.1f} µs: {(per_req - model) / model:.2f}x the model")
    if TOP:
        print(f"\n| function (thread, library) | share | µs per request | category |\n|---|---|---|---|")
        for pct, comm, dso, sym, c in sorted(hottest, reverse=True)[:TOP]:
            print(f"| {sym} ({comm}, {dso}) | {pct:.2f} % | {pct / 100 * per_req:.2f} | {c} |")


if __name__ == "__main__":
    main()
