#!/usr/bin/env python3
"""make bench-peer: gmserve against a FastAPI + uvicorn + PyTorch server of
our own (bench/peer.py) on the same model files, under wrk, in one run.

Both servers run at once on loopback ports: gmserve with its defaults
(OPENBLAS_NUM_THREADS=1, as bench-http), the peer as 2 uvicorn worker
processes of one torch thread each, so each side can use the machine's 2
cores. Before timing anything it checks that both compute the same thing:
NADE log p and VAE encode of the same PNG, VAE log p (k = 100) with the
peer given gmserve's own random draws (the port of the server's streams in
python/tests/test_http_parity.py) within 1e-3, and the VAE decoder and GAN
generator on the same latents within one grey level (through /decode).

Then for each operation and concurrency 1, 16, 64 it runs wrk on gmserve
and on the peer alternately (A B, then B A, PEER_ROUNDS times, PEER_SECONDS
each), so that drift of a shared machine lands on both alike, and prints
per cell the median requests/s of each side with the range over rounds,
the ratio of the medians, and each daemon's CPU time per request (utime +
stime of the whole process tree over the run, divided by the requests
answered). wrk shares the 2 cores with the servers.

Needs python3-torch, python3-fastapi, python3-uvicorn, python3-pil and wrk
(scripts/install-deps.sh --torch --bench).
"""
import base64
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "python", "tests"))
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import peer  # noqa: E402
from test_http_parity import Stream  # noqa: E402  (the server's random streams)

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
ROUNDS = int(os.environ.get("PEER_ROUNDS", "4"))
SECS = int(os.environ.get("PEER_SECONDS", "3"))
CONCURRENCY = [int(c) for c in os.environ.get("PEER_CONCURRENCY", "1,16,64").split(",")]
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODELS = {k: os.path.join(HERE, "..", "models", f"{k}.safetensors") for k in ("nade", "vae", "gan")}
TOL = 1e-3


def die(msg):
    print("bench-peer: " + msg, file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(base, path, body, ctype):
    req = urllib.request.Request(base + path, data=body, headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def post_json(base, path, obj):
    return json.loads(post(base, path, json.dumps(obj).encode(), "application/json"))


def wait_ready(base, proc, what):
    for _ in range(600):
        try:
            urllib.request.urlopen(base + "/readyz", timeout=2).read()
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            if proc.poll() is not None:
                die(f"{what} exited with {proc.returncode}")
            time.sleep(0.1)
    die(f"{what} did not become ready")


def tree(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / CLK_TCK


def to_ms(v):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3), ("m", 6e4)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)


def wrk(pid, url, c, script, env):
    cmd = ["wrk", f"-t{min(2, c)}", f"-c{c}", f"-d{SECS}s", "--latency", "--timeout", "10s", "-s", script, url]
    t0 = cpu_seconds(pid)
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **env)).stdout
    cpu = cpu_seconds(pid) - t0
    r = {"rps": 0.0, "n": 0, "bad": 0, "p50": 0.0, "p99": 0.0}
    for line in out.splitlines():
        f = line.split()
        if line.startswith("Requests/sec:"):
            r["rps"] = float(f[1])
        elif "requests in" in line:
            r["n"] = int(f[0])
        elif line.strip().startswith("50%"):
            r["p50"] = to_ms(f[1])
        elif line.strip().startswith("99%"):
            r["p99"] = to_ms(f[1])
        elif line.startswith("Non-2xx"):
            r["bad"] += int(f[-1])
        elif line.strip().startswith("Socket errors"):
            r["bad"] += sum(int(x.strip(",")) for x in f[3::2])
    r["cpu_us"] = cpu / r["n"] * 1e6 if r["n"] else 0.0
    return r


def png_pixels(data):
    return torch.tensor(list(Image.open(io.BytesIO(data)).convert("L").getdata()), dtype=torch.float64) / 255


def check(gm, vae_png, nade_png):
    """Both servers compute the same functions; returns the largest differences."""
    m = {k: peer.Model(k, p) for k, p in MODELS.items()}
    diffs = {}
    with torch.no_grad():
        x = (peer.png_decode(nade_png, m["nade"])[None] >= 0.5).float()
        got = json.loads(post(gm, "/v1/models/nade/logp", nade_png, "image/png"))["results"][0]["logp"]
        diffs["nade logp"] = abs(got - float(m["nade"].nade_logp(x)[0]))
        x = (peer.png_decode(vae_png, m["vae"])[None] >= 0.5).float()
        got = json.loads(post(gm, "/v1/models/vae/encode", vae_png, "image/png"))["results"][0]
        mu, lv = m["vae"].encode(x)
        diffs["vae encode"] = max(float((torch.tensor(got["z"]) - mu[0]).abs().max()),
                                  float((torch.tensor(got["logvar"]) - lv[0]).abs().max()))
        K, Z = 100, m["vae"].Z
        got = json.loads(post(gm, "/v1/models/vae/logp?k=100&seed=7", vae_png, "image/png"))["results"][0]
        r = Stream(7, 0)
        eps = torch.tensor([[[r.normal() for _ in range(Z)] for _ in range(K)]], dtype=torch.float64)
        lp, elbo, _ = m["vae"].vae_logp(x, K, eps=eps)
        diffs["vae logp k=100"] = max(abs(got["logp"] - float(lp[0])), abs(got["elbo"] - float(elbo[0])))
        g = torch.Generator().manual_seed(3)
        z = torch.randn(4, m["vae"].Z, generator=g)
        reply = post_json(gm, "/v1/models/vae/decode", {"latents": z.tolist(), "format": "json"})
        want = torch.sigmoid(m["vae"].dec(z)).double()
        diffs["vae decode (grey levels)"] = max(
            float((png_pixels(base64.b64decode(im["png"])) - want[i]).abs().max()) * 255
            for i, im in enumerate(reply["images"]))
        z, labels = torch.randn(4, m["gan"].Z, generator=g), [0, 3, 7, 9]
        reply = post_json(gm, "/v1/models/gan/decode", {"latents": z.tolist(), "label": labels, "format": "json"})
        inp = torch.cat([z, torch.nn.functional.one_hot(torch.tensor(labels), m["gan"].num_classes).float()], 1)
        want = ((m["gan"].gen(inp) + 1) / 2).reshape(4, -1).double()
        diffs["gan decode (grey levels)"] = max(
            float((png_pixels(base64.b64decode(im["png"])) - want[i]).abs().max()) * 255
            for i, im in enumerate(reply["images"]))
    return diffs


def main():
    if not os.access(os.path.join(BUILD, "gmserve"), os.X_OK):
        die(f"{BUILD}/gmserve is not built")
    tmp = tempfile.mkdtemp(prefix="bench-peer-")
    empty = os.path.join(tmp, "empty.json")
    with open(empty, "w") as f:
        f.write("{}\n")
    gport, pport = free_port(), free_port()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    glog, plog = open(os.path.join(tmp, "gmserve.log"), "w"), open(os.path.join(tmp, "peer.log"), "w")
    gm_cmd = [os.path.join(BUILD, "gmserve"), "--config", empty, "--listen", f"127.0.0.1:{gport}",
              "--log-format", "off"] + sum((["--model", f"{k}={p}"] for k, p in MODELS.items()), [])
    gproc = subprocess.Popen(gm_cmd, env=env, stdout=glog, stderr=glog)
    penv = dict(env, PEER_MODELS=",".join(f"{k}={p}" for k, p in MODELS.items()), PEER_TORCH_THREADS="1")
    pproc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", HERE, "peer:app", "--workers", "2",
                              "--host", "127.0.0.1", "--port", str(pport), "--log-level", "warning",
                              "--no-access-log"], env=penv, stdout=plog, stderr=plog, start_new_session=True)
    gm, pe = f"http://127.0.0.1:{gport}", f"http://127.0.0.1:{pport}"
    try:
        wait_ready(gm, gproc, "gmserve")
        wait_ready(pe, pproc, "the peer")
        vae_png = urllib.request.urlopen(gm + "/sample?model=vae&seed=1").read()
        nade_png = urllib.request.urlopen(gm + "/sample?model=nade&seed=1").read()
        diffs = check(gm, vae_png, nade_png)
        for k, v in diffs.items():
            print(f"  check {k}: max |gmserve - peer| = {v:.2g}", file=sys.stderr)
        bad = [k for k, v in diffs.items() if v > (1.0 if "grey" in k else TOL)]
        if bad:
            die(f"the servers disagree on {', '.join(bad)}: no fair comparison")
        # the peer answers the same request bodies
        for base in (gm, pe):
            post(base, "/v1/models/vae/logp?k=100", vae_png, "image/png")
        files = {"vae.png": vae_png, "nade.png": nade_png, "sample.json": b'{"n": 1}'}
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        script = os.path.join(tmp, "post.lua")
        with open(script, "w") as f:
            f.write('wrk.method = "POST"\nlocal f = io.open(os.getenv("BODY_FILE"), "rb")\n'
                    'wrk.body = f:read("*all")\nf:close()\nwrk.headers["Content-Type"] = os.getenv("BODY_TYPE")\n')
        ops = [("vae_logp k=100", "/v1/models/vae/logp?k=100", "vae.png", "image/png"),
               ("nade_logp", "/v1/models/nade/logp", "nade.png", "image/png"),
               ("vae_sample", "/v1/models/vae/sample", "sample.json", "application/json"),
               ("gan_sample", "/v1/models/gan/sample", "sample.json", "application/json"),
               ("vae_encode", "/v1/models/vae/encode", "vae.png", "image/png")]
        sides = (("gmserve", gm, gproc.pid), ("peer", pe, pproc.pid))
        rows = []
        for name, path, body, ctype in ops:
            wenv = {"BODY_FILE": os.path.join(tmp, body), "BODY_TYPE": ctype}
            for c in CONCURRENCY:
                res = {"gmserve": [], "peer": []}
                for r in range(ROUNDS):
                    for side, base, pid in (sides if r % 2 == 0 else sides[::-1]):
                        res[side].append(wrk(pid, base + path, c, script, wenv))
                g, p = res["gmserve"], res["peer"]
                med = {s: statistics.median(x["rps"] for x in res[s]) for s in res}
                cpu = {s: statistics.median(x["cpu_us"] for x in res[s]) for s in res}
                row = (name, c, med["gmserve"], min(x["rps"] for x in g), max(x["rps"] for x in g),
                       med["peer"], min(x["rps"] for x in p), max(x["rps"] for x in p),
                       med["gmserve"] / med["peer"] if med["peer"] else 0.0,
                       min(a["rps"] / b["rps"] for a, b in zip(g, p) if b["rps"]) if any(x["rps"] for x in p) else 0,
                       max(a["rps"] / b["rps"] for a, b in zip(g, p) if b["rps"]) if any(x["rps"] for x in p) else 0,
                       cpu["gmserve"], cpu["peer"], cpu["peer"] / cpu["gmserve"] if cpu["gmserve"] else 0.0,
                       sum(x["bad"] for x in g), sum(x["bad"] for x in p))
                print("  " + " ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row),
                      file=sys.stderr)
                rows.append(row)
    finally:
        gproc.send_signal(signal.SIGTERM)
        os.killpg(pproc.pid, signal.SIGTERM)
        gproc.wait(timeout=60)
        pproc.wait(timeout=60)
    print(f"\nbench-peer: {ROUNDS} interleaved rounds of {SECS} s per cell; medians, [min-max] over rounds; "
          "CPU: daemon CPU time per request (median)\n")
    print("| op | concurrency | gmserve req/s | peer req/s | ratio of medians | per-round ratios | "
          "gmserve CPU µs/req | peer CPU µs/req | CPU ratio | non-2xx (gmserve/peer) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (name, c, gmed, gmin, gmax, pmed, pmin, pmax, ratio, rmin, rmax, gcpu, pcpu, cratio, gbad, pbad) in rows:
        print(f"| {name} | {c} | {gmed:.0f} [{gmin:.0f}-{gmax:.0f}] | {pmed:.0f} [{pmin:.0f}-{pmax:.0f}] | "
              f"{ratio:.1f}× | {rmin:.1f}-{rmax:.1f}× | {gcpu:.0f} | {pcpu:.0f} | {cratio:.1f}× | {gbad}/{pbad} |")


if __name__ == "__main__":
    main()
