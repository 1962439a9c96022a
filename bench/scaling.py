#!/usr/bin/env python3
"""make bench-scaling: what each scaling signal shows as the offered load grows.

Starts build/gmserve on config/gmserve.json (a free loopback port,
OPENBLAS_NUM_THREADS=1) and steps the load with wrk over concurrency
1, 2, 4, 8, 16, 64 on two routes: a cheap one (GET /sample?model=gan&n=1)
and an expensive one (POST a PNG to the VAE's /logp with k=1000). For each
step it records throughput and p50/p99 latency (wrk --latency), the daemon's
CPU over the step as cores busy (utime + stime from /proc/PID/stat), and
gmserve_queue_depth (mean and max) and gmserve_in_flight_requests (mean, this
scrape left out) from /metrics every 0.5 s, and prints one
table per series. wrk runs on the same machine as the daemon, so it takes
some of the cores; read the figures against the worker count.

Standard library only. SCALING_SECONDS (default 15) sets each step's length.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
SECS = int(os.environ.get("SCALING_SECONDS", "15"))
CONCURRENCY = [1, 2, 4, 8, 16, 64]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def die(msg):
    print("bench-scaling: " + msg, file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def cpu_seconds(pid):
    # fields after the ")" of the command name: utime and stime are 14th and 15th overall
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def gauges(base):
    """(queue depth, in flight) from /metrics: waiting for a worker, and received but not answered."""
    text = get(base + "/metrics", timeout=2).decode()
    q = re.search(r"^gmserve_queue_depth (\d+)$", text, re.M)
    f = re.search(r"^gmserve_in_flight_requests (\d+)$", text, re.M)
    # in flight counts this /metrics request itself: leave it out
    return (int(q.group(1)), int(f.group(1)) - 1) if q and f else None


def to_ms(v):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3), ("m", 6e4)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)


def step(pid, base, url, c, script):
    """One wrk run at concurrency c, with CPU and queue depth sampled alongside."""
    cmd = ["wrk", f"-t{min(2, c)}", f"-c{c}", f"-d{SECS}s", "--latency", "--timeout", "10s"]
    if script:
        cmd += ["-s", script]
    depths, stop = [], threading.Event()

    def sample():
        while not stop.wait(0.5):
            try:
                d = gauges(base)
            except OSError:
                continue  # /metrics is answered on the HTTP threads; a miss is rare and skipped
            if d is not None:
                depths.append(d)

    t0, cpu0 = time.monotonic(), cpu_seconds(pid)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=SECS + 30).stdout
    except subprocess.TimeoutExpired:
        die(f"wrk did not finish at c={c}")
    stop.set()
    sampler.join()
    wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rps and p50 and p99):
        die(f"could not read wrk's output at c={c}:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*timeout (\d+)", out)
    return {
        "c": c, "rps": float(rps.group(1)), "p50": to_ms(p50.group(1)), "p99": to_ms(p99.group(1)),
        "cores": cpu / wall,
        "qmean": sum(d[0] for d in depths) / len(depths) if depths else 0.0,
        "qmax": max(d[0] for d in depths) if depths else 0,
        "fmean": sum(d[1] for d in depths) / len(depths) if depths else 0.0,
        "bad": int(bad.group(1)) if bad else 0, "timeouts": int(errs.group(1)) if errs else 0,
    }


def table(title, rows):
    print(f"\n{title}\n")
    print("| concurrency | req/s | p50 ms | p99 ms | cores busy | queue mean | queue max | in flight mean | non-2xx | timeouts |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['c']} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['cores']:.2f} "
              f"| {r['qmean']:.1f} | {r['qmax']} | {r['fmean']:.1f} | {r['bad']} | {r['timeouts']} |")
    sys.stdout.flush()


def main():
    gmserve = os.path.join(BUILD, "gmserve")
    if not os.access(gmserve, os.X_OK):
        die(f"{gmserve} is missing; run make first")
    if subprocess.run(["sh", "-c", "command -v wrk"], capture_output=True).returncode != 0:
        die("needs wrk (apt-get install wrk)")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tmp = tempfile.mkdtemp(prefix="gmserve-scaling-")
    log = open(os.path.join(tmp, "daemon.log"), "w")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    daemon = subprocess.Popen([gmserve, "--config", "config/gmserve.json", "--listen", f"127.0.0.1:{port}",
                               "--log-format", "off"], env=env, stdout=log, stderr=log)
    try:
        for _ in range(100):
            try:
                get(base + "/readyz", timeout=1)
                break
            except OSError:
                if daemon.poll() is not None:
                    die(f"the daemon exited with {daemon.returncode}; see {log.name}")
                time.sleep(0.1)
        else:
            die(f"the daemon was not ready within 10 s; see {log.name}")

        png = os.path.join(tmp, "nade.png")
        with open(png, "wb") as f:
            f.write(get(base + "/sample?model=nade&seed=1"))
        script = os.path.join(tmp, "logp.lua")
        with open(script, "w") as f:
            f.write('wrk.method = "POST"\n'
                    f'local f = io.open("{png}", "rb")\n'
                    'wrk.body = f:read("*all")\nf:close()\n'
                    'wrk.headers["Content-Type"] = "image/png"\n')

        workers = 2
        m = re.search(r'"workers"\s*:\s*(\d+)', open("config/gmserve.json").read())
        if m:
            workers = int(m.group(1))
        print(f"bench-scaling: {gmserve} on {base}, {workers} workers, {os.cpu_count()} cores on this machine "
              f"(wrk shares them), {SECS} s per step, load average before: {os.getloadavg()[0]:.2f}")

        series = [("GET /sample?model=gan&n=1 (cheap)", base + "/sample?model=gan&n=1", None),
                  ("POST /v1/models/vae/logp?k=1000, one PNG (expensive)",
                   base + "/v1/models/vae/logp?k=1000", script)]
        for title, url, lua in series:
            rows = []
            for c in CONCURRENCY:
                rows.append(step(daemon.pid, base, url, c, lua))
                r = rows[-1]
                print(f"  c={c}: {r['rps']:.0f} req/s, p99 {r['p99']:.1f} ms, {r['cores']:.2f} cores, "
                      f"queue {r['qmean']:.1f}/{r['qmax']}", file=sys.stderr)
            table(title, rows)
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=40)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
                die("the daemon did not stop within 40 s of SIGTERM")
    if daemon.returncode != 0:
        die(f"the daemon exited with {daemon.returncode} after SIGTERM; see {log.name}")
    print(f"\nbench-scaling: daemon stopped (exit 0); load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
