#!/usr/bin/python3
"""make soak: the live daemon under mixed legitimate load with attacks mixed in.

Starts build/gmserve (or argv[1]) on config/gmserve.json, on a loopback port
the daemon picks itself, and for SOAK_SECONDS (default 1800) keeps
SOAK_CONCURRENCY (64) legitimate clients busy on keep-alive connections:
sample (nade, vae, gan; n 1-16; PNG and JSON), logp (NADE exact, VAE with
k 1-1000) and encode (PNG and JSON bodies), /v1/models, /healthz, /metrics.
Alongside, attack lanes send what a hostile or broken client sends: slow
headers, half-closed and reset connections, unfinished and oversized bodies,
conflicting framing, huge chunk sizes, thousands of parameters, bad parameter
names and paths, a PNG whose chunk length is 2^31-1, GAN truncation 1e-30,
the heaviest VAE logp and PNG grid the limits allow.

Legitimate requests must get a 2xx with a well-formed body. Attacks may get
any reply, or none when the request was left unfinished; a complete attack
request that gets no reply within its timeout counts as a hang. Every ~10 s
the daemon's VmRSS and the legitimate latency are sampled (written to
build/soak/samples.csv). The daemon must stay alive, must answer /healthz at
the end, its RSS must not grow by more than SOAK_RSS_MARGIN_MB after the
warm-up, and SIGTERM must stop it with exit status 0. Any failure makes the
exit status 1.

Only the Python standard library; all traffic goes to 127.0.0.1; every loop
is bounded in count and time and every socket operation has a timeout, so
the soak ends by itself even when the daemon hangs.

Settings (environment): SOAK_SECONDS, SOAK_CONCURRENCY, SOAK_WARMUP_S
(default: a tenth of the run, 10-120 s), SOAK_RSS_MARGIN_MB (64),
SOAK_SLOW_CONNS (128 slow-header connections held at once), SOAK_ATTACKS
(comma list of attack kinds, "none", default all), SOAK_SEED (1),
SOAK_OUT (build/soak), SOAK_LOG_FORMAT (off: the daemon's access log).
"""

import asyncio
import base64
import itertools
import json
import math
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from array import array
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env_num(name, default, kind=int):
    v = os.environ.get(name, "")
    try:
        return kind(v) if v else default
    except ValueError:
        sys.exit(f"soak: {name}={v!r} is not a number")


SECONDS = env_num("SOAK_SECONDS", 1800, float)
CONCURRENCY = env_num("SOAK_CONCURRENCY", 64)
WARMUP_S = env_num("SOAK_WARMUP_S", min(120.0, max(10.0, SECONDS / 10)), float)
RSS_MARGIN_MB = env_num("SOAK_RSS_MARGIN_MB", 64.0, float)
SLOW_CONNS = env_num("SOAK_SLOW_CONNS", 128)
SEED = env_num("SOAK_SEED", 1)
OUT = os.environ.get("SOAK_OUT", os.path.join(ROOT, "build", "soak"))
LOG_FORMAT = os.environ.get("SOAK_LOG_FORMAT", "off")
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "gmserve")

HOST = "127.0.0.1"
# Attacks come from other loopback addresses, as from other machines: the
# per-address connection limit then stops none of them at the door, so they
# reach the request handling they aim at (legitimate clients use HOST).
ATTACKERS = int(env_num("SOAK_ATTACKER_ADDRESSES", 8))
_next_attacker = itertools.count()


def attacker_address():
    return f"127.0.0.{2 + next(_next_attacker) % ATTACKERS}"
SAMPLE_EVERY_S = 10.0
LEGIT_TIMEOUT_S = 60.0     # above the daemon's 30 s deadline plus compute
START_TIMEOUT_S = 60.0     # models load in ~1 s; a sanitizer build is slower
STOP_TIMEOUT_S = 60.0      # the drain waits at most 30 s
FINISH_TIMEOUT_S = 90.0    # in-flight requests when the time is up
REPLY_DUE_S = 40.0         # a complete attack request unanswered this long is a hang
HEAVY_DUE_S = 120.0        # the same for the heaviest requests the limits allow
MAX_BODY = 8 * 1024 * 1024  # the daemon's default max_body_bytes
MAX_REPLY = 256 * 1024 * 1024
MAX_CHUNKS = 100000


class NoReply(Exception):
    """The connection ended, or the time ran out, before a whole reply."""


# ---------------------------------------------------------------- HTTP/1.1

class Reply:
    def __init__(self, status, headers, body, size):
        self.status, self.headers, self.body, self.size = status, headers, body, size


async def read_reply(reader, keep=True):
    """One HTTP/1.1 reply from reader; body kept when keep (else the first 512 bytes)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        raise NoReply("closed before a reply" if not e.partial else "closed inside the reply head")
    except asyncio.LimitOverrunError:
        raise NoReply("reply head over 64 KiB")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        raise NoReply(f"bad status line {lines[0][:80]!r}")
    status = int(m.group(1))
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    parts, size = [], 0

    def take(data):
        nonlocal size
        size += len(data)
        if size > MAX_REPLY:
            raise NoReply(f"reply body over {MAX_REPLY} bytes")
        if keep or size - len(data) < 512:
            parts.append(data)

    try:
        if status in (204, 304) or 100 <= status < 200:
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            for _ in range(MAX_CHUNKS):
                n = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                while n > 0:
                    data = await reader.readexactly(min(n, 1 << 20))
                    n -= len(data)
                    take(data)
                await reader.readexactly(2)
            else:
                raise NoReply(f"more than {MAX_CHUNKS} chunks")
        elif "content-length" in headers:
            n = int(headers["content-length"])
            while n > 0:
                data = await reader.readexactly(min(n, 1 << 20))
                n -= len(data)
                take(data)
        else:
            while True:
                data = await reader.read(1 << 20)
                if not data:
                    break
                take(data)
    except (asyncio.IncompleteReadError, ValueError) as e:
        raise NoReply(f"reply body cut short ({type(e).__name__})")
    return Reply(status, headers, b"".join(parts), size)


def request_bytes(method, path, body=b"", ctype=None, extra=""):
    h = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n"
    if ctype:
        h += f"Content-Type: {ctype}\r\n"
    if body or method == "POST":
        h += f"Content-Length: {len(body)}\r\n"
    return (h + extra + "\r\n").encode("latin-1") + body


async def open_conn(port, timeout=10.0, source=None):
    try:
        local = (source, 0) if source else None
        return await asyncio.wait_for(asyncio.open_connection(HOST, port, limit=1 << 16, local_addr=local), timeout)
    except asyncio.TimeoutError:
        raise NoReply("connect timed out")
    except OSError as e:
        raise NoReply(f"connect failed: {e.strerror or e}")


def close_writer(writer, reset=False):
    try:
        if reset:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()
    except (OSError, RuntimeError):
        pass


# ---------------------------------------------------------------- PNG

def png_gray(width, height, pixels):
    """An 8-bit grayscale PNG of pixels (bytes, raster order)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + pixels[y * width:(y + 1) * width] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def png_text_2g():
    """44 bytes: a valid signature and IHDR, then a tEXt chunk that says it holds 2^31-1 bytes."""
    ihdr = struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + struct.pack(">I", 2**31 - 1) + b"tEXtDes")
    assert len(data) == 44
    return data


# ---------------------------------------------------------------- statistics

def pct(sorted_vals, q):
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


class Stats:
    def __init__(self):
        self.legit = {}          # kind -> [count, non2xx, noreply, badbody, latencies]
        self.failures = []       # the first legit failures, with detail
        self.attacks = {}        # kind -> Counter(outcome)
        self.attack_max_s = Counter()
        self.hangs = Counter()   # (kind, variant, outcome) of complete attack requests with no reply
        self.window = array("d")  # legit latencies since the last sample
        self.window_fail = 0
        self.window_attacks = 0

    def legit_done(self, kind, t_rel, latency, status, ok, detail):
        s = self.legit.setdefault(kind, [0, 0, 0, 0, array("d")])
        s[0] += 1
        if status is None:
            s[2] += 1
        elif not 200 <= status < 300:
            s[1] += 1
        elif not ok:
            s[3] += 1
        if status is not None:
            s[4].append(latency)
            self.window.append(latency)
        if status is None or not ok:
            self.window_fail += 1
            if len(self.failures) < 20:
                self.failures.append(f"sent at t={t_rel:.1f}s {kind}: {detail}")

    def attack_done(self, kind, outcome, elapsed, complete, desc):
        self.attacks.setdefault(kind, Counter())[outcome] += 1
        self.attack_max_s[kind] = max(self.attack_max_s[kind], elapsed)
        self.window_attacks += 1
        if complete and outcome.startswith("no reply"):
            self.hangs[(kind, desc, outcome)] += 1

    def hang_count(self):
        return sum(self.hangs.values())


# ---------------------------------------------------------------- the soak

class Soak:
    def __init__(self):
        self.rng = random.Random(SEED)
        self.stats = Stats()
        self.stopping = False
        self.t0 = time.monotonic()
        self.end_at = self.t0 + SECONDS
        self.proc = None
        self.port = None
        self.died = None
        self.rss = []            # (t, MB)
        self.series = []         # rows for samples.csv
        self.pngs = []           # legitimate 28x28 PNG bodies
        self.heavy_body = b""

    def now(self):
        return time.monotonic() - self.t0

    def live(self):
        return not self.stopping and time.monotonic() < self.end_at

    # ---- the daemon

    def start_daemon(self):
        os.makedirs(OUT, exist_ok=True)
        self.log_path = os.path.join(OUT, "daemon.log")
        log = open(self.log_path, "wb")
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        cmd = [BIN, "--config", os.path.join(ROOT, "config", "gmserve.json"),
               "--listen", f"{HOST}:0", "--log-format", LOG_FORMAT]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"soak: {BIN} exited with {self.proc.returncode} at start-up; see {self.log_path}")
            with open(self.log_path, "rb") as f:
                m = re.search(rb"serving .* on http://[^:]+:(\d+)", f.read())
            if m:
                self.port = int(m.group(1))
                return
            time.sleep(0.1)
        self.proc.kill()
        sys.exit(f"soak: {BIN} did not say it was serving within {START_TIMEOUT_S:.0f} s; see {self.log_path}")

    def rss_mb(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return None

    def check_alive(self):
        if self.died is None and self.proc.poll() is not None:
            rc = self.proc.returncode
            self.died = (f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with {rc}") + \
                f" at t={self.now():.1f}s"
            self.stopping = True
        return self.died is None

    async def monitor(self):
        """Every SAMPLE_EVERY_S: RSS, and the legitimate latency since the previous sample."""
        progress_s = 60.0 if SECONDS >= 600 else SAMPLE_EVERY_S
        next_progress = self.t0 + progress_s
        minute = array("d")
        minute_fail = 0
        while self.live():
            await asyncio.sleep(min(SAMPLE_EVERY_S, max(0.05, self.end_at - time.monotonic())))
            if not self.check_alive():
                break
            t, rss = self.now(), self.rss_mb()
            st = self.stats
            w = sorted(st.window)
            minute.extend(st.window)
            minute_fail += st.window_fail
            if rss is not None:
                self.rss.append((t, rss))
            self.series.append((t, rss, len(w), st.window_fail, st.window_attacks,
                                pct(w, 0.5), pct(w, 0.99), w[-1] if w else float("nan")))
            st.window, st.window_fail, st.window_attacks = array("d"), 0, 0
            if time.monotonic() >= next_progress - 1.0:
                m = sorted(minute)
                print(f"soak: t={t:6.0f}s rss {rss or 0:7.1f} MB  legit {len(m):6d} replies, "
                      f"{minute_fail} failed, p50 {fmt_ms(pct(m, 0.5))} ms, p99 {fmt_ms(pct(m, 0.99))} ms",
                      flush=True)
                minute, minute_fail = array("d"), 0
                next_progress += progress_s

    # ---- legitimate traffic

    def legit_request(self):
        """(kind, request bytes, check(reply) -> error or None)."""
        r = self.rng
        seed = r.randrange(1 << 32)

        def want_png(rep):
            return None if rep.body.startswith(b"\x89PNG\r\n\x1a\n") else "body is not a PNG"

        def want_json(key, n):
            def check(rep):
                try:
                    got = json.loads(rep.body)
                except ValueError:
                    return "body is not JSON"
                if key and (not isinstance(got, dict) or len(got.get(key, ())) != n):
                    return f"JSON without {n} {key}"
                return None
            return check

        def images(n):
            out = []
            for _ in range(n):
                if r.random() < 0.25:
                    out.append({"pixels": [r.choice((0, 1)) for _ in range(784)]})
                else:
                    out.append({"png": base64.b64encode(r.choice(self.pngs)).decode()})
            return out

        pick = r.random()
        if pick < 0.36:  # sample
            model = r.choice(("nade", "vae", "gan"))
            n = r.randint(1, 16)
            if r.random() < 0.5:
                return (f"sample_{model}_png",
                        request_bytes("GET", f"/sample?model={model}&n={n}&seed={seed}"), want_png)
            if r.random() < 0.5:
                return (f"sample_{model}_json",
                        request_bytes("GET", f"/v1/models/{model}/sample?n={n}&seed={seed}&format=json"),
                        want_json("images", n))
            body = json.dumps({"n": n, "seed": seed}).encode()
            return (f"sample_{model}_json", request_bytes("POST", f"/v1/models/{model}/sample", body,
                                                          "application/json"), want_json("images", n))
        if pick < 0.84:  # logp and encode
            op, model = r.choice((("logp", "nade"), ("logp", "vae"), ("logp", "vae"),
                                  ("encode", "vae"), ("encode", "gan"), ("encode", "nade")))
            q = f"?k={r.randint(1, 1000)}" if model == "vae" and op == "logp" else ""
            if r.random() < 0.5:
                return (f"{op}_{model}_png", request_bytes("POST", f"/v1/models/{model}/{op}{q}",
                                                           r.choice(self.pngs), "image/png"),
                        want_json("results", 1))
            n = r.randint(1, 8)
            doc = {"images": images(n)}
            if q:
                doc["k"], doc["seed"] = int(q[3:]), seed
            return (f"{op}_{model}_json", request_bytes("POST", f"/v1/models/{model}/{op}",
                                                        json.dumps(doc).encode(), "application/json"),
                    want_json("results", n))
        if pick < 0.90:
            return "models", request_bytes("GET", "/v1/models"), want_json(None, 0)
        if pick < 0.96:
            return "healthz", request_bytes("GET", "/healthz"), lambda rep: None
        return ("metrics", request_bytes("GET", "/metrics"),
                lambda rep: None if b"gmserve_requests_total" in rep.body else "no gmserve_requests_total")

    async def legit_client(self, i):
        conn = None
        await asyncio.sleep(i * 0.01)
        while self.live():
            kind, req, check = self.legit_request()
            t, sent_at = time.monotonic(), self.now()
            status, ok, detail = None, False, ""
            try:
                if conn is None:
                    conn = await open_conn(self.port)
                reader, writer = conn
                writer.write(req)
                await asyncio.wait_for(writer.drain(), LEGIT_TIMEOUT_S)
                rep = await asyncio.wait_for(read_reply(reader), LEGIT_TIMEOUT_S)
                status = rep.status
                err = check(rep) if 200 <= status < 300 else rep.body[:200].decode("utf-8", "replace")
                ok = 200 <= status < 300 and err is None
                detail = f"{status} {err}"
                if rep.headers.get("connection", "").lower() == "close":
                    close_writer(writer)
                    conn = None
            except asyncio.TimeoutError:
                detail = f"no reply in {LEGIT_TIMEOUT_S:.0f} s"
            except (NoReply, OSError) as e:
                detail = f"no reply: {e}"
            if status is None:
                if conn is not None:
                    close_writer(conn[1])
                    conn = None
                if not self.check_alive():
                    break
                await asyncio.sleep(0.1)  # no tight loop against a refusing port
            first = req.split(b"\r\n", 1)[0][:100].decode("latin-1")
            self.stats.legit_done(kind, sent_at, time.monotonic() - t, status, ok, f"{first}: {detail}")
        if conn is not None:
            close_writer(conn[1])

    # ---- attacks

    async def exchange(self, kind, req, timeout, complete, desc, after=None):
        """Sends req (bytes or a list of pieces), waits for a reply; records the outcome."""
        t = time.monotonic()
        outcome, writer = None, None
        try:
            reader, writer = await open_conn(self.port, source=attacker_address())
            for piece in (req if isinstance(req, list) else [req]):
                writer.write(piece)
                await asyncio.wait_for(writer.drain(), timeout)
            if after is not None:
                await after(writer)
            rep = await asyncio.wait_for(read_reply(reader, keep=False), timeout)
            outcome = str(rep.status)
        except asyncio.TimeoutError:
            outcome = f"no reply in {timeout:.0f} s"
        except NoReply as e:
            outcome = "closed" if "closed" in str(e) else str(e)
        except ConnectionResetError:
            outcome = "reset"
        except OSError as e:
            outcome = f"error {e.errno}"
        except asyncio.CancelledError:
            outcome = "unanswered when the run ended"
            raise
        finally:
            if writer is not None:
                close_writer(writer)
            self.stats.attack_done(kind, outcome, time.monotonic() - t, complete, desc)

    async def lane(self, every_s, body, cap, start_within=5.0):
        """Starts body() every every_s seconds, with at most cap of them in flight, until the end;
        so an attack left unanswered does not stop the ones after it."""
        await asyncio.sleep(self.rng.uniform(0, start_within))
        running = set()
        try:
            while self.live():
                running = {t for t in running if not t.done()}
                if len(running) < cap:
                    running.add(asyncio.ensure_future(body()))
                await asyncio.sleep(max(every_s, 0.05))
        finally:
            for t in running:
                t.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def slow_header(self):
        """Holds a request whose headers never end, one byte every 2-5 s, until the server closes it."""
        t = time.monotonic()
        hold_s = 120.0
        writer, outcome = None, None
        try:
            reader, writer = await open_conn(self.port, source=attacker_address())
            writer.write(b"GET /sample?model=nade HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            read = asyncio.ensure_future(reader.read(4096))
            while self.live() and time.monotonic() - t < hold_s:
                await asyncio.wait([read], timeout=self.rng.uniform(2.0, 5.0))
                if read.done():
                    break
                writer.write(b"a")
                await asyncio.wait_for(writer.drain(), 10.0)
            if read.done():
                data = read.result() if not read.exception() else b""
                m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
                outcome = (m.group(1).decode() if m else "closed") + \
                    f" by the server after {bucket(time.monotonic() - t)}"
            else:
                read.cancel()
                outcome = f"still open after the {hold_s:.0f} s we hold one" if self.live() else \
                    "still open when the run ended"
        except (NoReply, OSError, asyncio.TimeoutError) as e:
            outcome = f"{type(e).__name__}: {e}"[:60]
        except asyncio.CancelledError:
            outcome = "still open when the run ended"
            raise
        finally:
            if writer is not None:
                close_writer(writer)
            self.stats.attack_done("slow_header", outcome, time.monotonic() - t, False, "")

    async def half_close_burst(self):
        """64 connections at once that send part of a request, then close, reset or half-close."""
        partial = [b"GET /sample?model=gan&n=4 HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                   b"POST /v1/models/vae/logp HTTP/1.1\r\nContent-Length: 5000\r\n\r\n{\"images\": [",
                   b"GET /metr", b"P"]

        async def one(i):
            how = ("close", "reset", "half-close")[i % 3]
            req = self.rng.choice(partial)
            if how == "half-close":
                async def shut(writer):
                    writer.write_eof()
                await self.exchange("half_close_burst", req, 5.0, False, how, after=shut)
                return
            t = time.monotonic()
            try:
                reader, writer = await open_conn(self.port, source=attacker_address())
                writer.write(req)
                await asyncio.wait_for(writer.drain(), 5.0)
                close_writer(writer, reset=how == "reset")
                outcome = "we reset" if how == "reset" else "we closed"
            except (NoReply, OSError, asyncio.TimeoutError) as e:
                outcome = f"{type(e).__name__}"
            self.stats.attack_done("half_close_burst", outcome, time.monotonic() - t, False, how)

        await asyncio.gather(*(one(i) for i in range(64)))

    async def unfinished_body(self):
        """Declares a 4 MB PNG body, sends 1 MB of it, then waits 15 s and goes."""
        head = (f"POST /v1/models/nade/logp HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: image/png\r\n"
                f"Content-Length: {4 << 20}\r\n\r\n").encode()
        await self.exchange("unfinished_body", [head] + [os.urandom(64 << 10)] * 16, 15.0, False, "")

    async def oversized_length(self):
        n = self.rng.choice((str(MAX_BODY + 1), "1000000000000", "18446744073709551616",
                             "99999999999999999999999999999", "-1", "0x10", "1 000"))
        req = (f"POST /v1/models/nade/logp HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: image/png\r\n"
               f"Content-Length: {n}\r\n\r\n").encode() + b"\x89PNG\r\n\x1a\n"
        await self.exchange("oversized_length", req, 10.0, False, f"Content-Length: {n}")

    async def cl_te_conflict(self):
        body = b'{"n": 1}'
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        variants = {
            "CL+TE": (f"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", chunked),
            "TE+CL": (f"Transfer-Encoding: chunked\r\nContent-Length: {len(chunked) + 40}\r\n", chunked),
            "CL+CL": (f"Content-Length: {len(body)}\r\nContent-Length: 2\r\n", body),
            "TE gzip,chunked": ("Transfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n", chunked),
            "TE: xchunked": (f"Transfer-Encoding: xchunked\r\nContent-Length: {len(body)}\r\n", body),
        }
        name = self.rng.choice(sorted(variants))
        hdr, b = variants[name]
        req = (f"POST /v1/models/nade/sample HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
               + hdr + "\r\n").encode() + b + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        # Whichever framing the server follows, the bytes form whole requests, so a reply is due.
        await self.exchange("cl_te_conflict", req, REPLY_DUE_S, True, name)

    async def huge_chunk(self):
        size = self.rng.choice(("ffffffffffffffff", "7fffffffffffffff", "100000000", "80000000",
                                "fffffffffffffffffffffffff", "-1", "1;" + "x" * 5000))
        req = [(f"POST /v1/models/nade/logp HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: image/png\r\n"
                f"Transfer-Encoding: chunked\r\n\r\n{size}\r\n").encode(), b"\x89PNG\r\n\x1a\n" + bytes(65536)]
        await self.exchange("huge_chunk", req, 10.0, False, f"chunk size {size[:20]}")

    async def many_params(self):
        v = self.rng.randrange(4)
        if v == 0:
            q = "&".join(f"p{i}=1" for i in range(3000))
        elif v == 1:
            q = "&".join(["n=1"] * 3000)
        elif v == 2:
            q = "&" * 3000
        else:
            body = json.dumps({f"p{i}": i for i in range(3000)}).encode()
            req = request_bytes("POST", "/v1/models/nade/sample", body, "application/json")
            await self.exchange("many_params", req, REPLY_DUE_S, True, "JSON with 3000 keys")
            return
        await self.exchange("many_params", request_bytes("GET", "/sample?model=nade&" + q), REPLY_DUE_S, True,
                            f"3000 query parameters (variant {v})")

    async def bad_param_names(self):
        path = self.rng.choice(("/sample?model=nade&=5", "/sample?model=nade&%00=1", "/sample?model=nade&%ff=1",
                                "/sample?%00", "/sample?model=nade%00", "/sample?model=%ff",
                                "/sample?model=nade&n%00=2", "/sample?&&&=&=", "/sample?model=nade&%c3%28=1",
                                "/v1/models/nade/sample?%ff%fe=1", "/sample?model=nade&seed=%00",
                                "/sample?model=nade&n=%ff", "/v1/models/vae/logp?k=%00"))
        await self.exchange("bad_param_names", request_bytes("GET", path), REPLY_DUE_S, True, path)

    async def png_text_2g_lane(self):
        png = png_text_2g()
        where = self.rng.choice(("nade/logp", "vae/logp", "vae/encode", "gan/encode", "json"))
        if where == "json":
            body = json.dumps({"images": [{"png": base64.b64encode(png).decode()}]}).encode()
            req = request_bytes("POST", "/v1/models/nade/logp", body, "application/json")
        else:
            req = request_bytes("POST", f"/v1/models/{where}", png, "image/png")
        await self.exchange("png_text_2g", req, REPLY_DUE_S, True, where)

    async def gan_truncation_tiny(self):
        if self.rng.random() < 0.5:
            req = request_bytes("GET", "/sample?model=gan&truncation=1e-30")
        else:
            req = request_bytes("POST", "/v1/models/gan/sample", b'{"n": 16, "truncation": 1e-30}',
                                "application/json")
        await self.exchange("gan_truncation_tiny", req, REPLY_DUE_S, True, "truncation=1e-30")

    async def vae_logp_heavy(self):
        req = request_bytes("POST", "/v1/models/vae/logp", self.heavy_body, "application/json")
        await self.exchange("vae_logp_heavy", req, HEAVY_DUE_S, True, "256 images, k=5000")

    async def big_grid(self):
        model = self.rng.choice(("gan", "nade", "vae"))
        await self.exchange("big_grid", request_bytes("GET", f"/sample?model={model}&n=256&scale=16"), HEAVY_DUE_S,
                            True, f"{model} n=256 scale=16")

    async def bad_path(self):
        path = self.rng.choice(("/%ff", "/sample%0a?model=nade", "/v1/models/nade%0a/sample", "/%0a",
                                "/v1/models/%ff", "/v1/models/nade/%0alogp", "/%00", "/ui/%2e%2e/%2e%2e/etc/passwd",
                                "/ui/..%2f..%2fREADME.md", "/" + "a" * 10000))
        await self.exchange("bad_path", request_bytes("GET", path), REPLY_DUE_S, True, path[:40])

    def attack_tasks(self):
        lanes = {
            # kind: (start one every ... s, at most ... in flight, body)
            "half_close_burst": (5.0, 1, self.half_close_burst),
            "unfinished_body": (2.0, 8, self.unfinished_body),
            "oversized_length": (0.5, 8, self.oversized_length),
            "cl_te_conflict": (0.5, 8, self.cl_te_conflict),
            "huge_chunk": (0.5, 8, self.huge_chunk),
            "many_params": (1.0, 4, self.many_params),
            "bad_param_names": (0.25, 8, self.bad_param_names),
            "png_text_2g": (0.5, 8, self.png_text_2g_lane),
            "bad_path": (0.5, 8, self.bad_path),
            # the heavy ones one at a time: each alone is within the limits a client may ask for
            "gan_truncation_tiny": (5.0, 1, self.gan_truncation_tiny),
            "vae_logp_heavy": (5.0, 1, self.vae_logp_heavy),
            "big_grid": (5.0, 1, self.big_grid),
        }
        kinds = ["slow_header"] + sorted(lanes)
        chosen = os.environ.get("SOAK_ATTACKS", "all")
        if chosen == "all":
            chosen = kinds
        elif chosen == "none":
            chosen = []
        else:
            chosen = [k.strip() for k in chosen.split(",") if k.strip()]
            bad = [k for k in chosen if k not in kinds]
            if bad:
                sys.exit(f"soak: unknown attack kind(s) {', '.join(bad)}; known: {', '.join(kinds)}")
        tasks = []
        for k in chosen:
            if k == "slow_header":
                # SLOW_CONNS lanes, opened over the first 10 s, each reopening when its connection ends
                tasks += [self.lane(1.0, self.slow_header, 1, 10.0) for _ in range(SLOW_CONNS)]
            else:
                every, cap, body = lanes[k]
                tasks.append(self.lane(every, body, cap, min(every, 5.0)))
        return chosen, tasks

    # ---- the run

    async def fetch(self, path, timeout=30.0):
        reader, writer = await open_conn(self.port)
        try:
            writer.write(request_bytes("GET", path))
            return await asyncio.wait_for(read_reply(reader), timeout)
        finally:
            close_writer(writer)

    async def prepare(self):
        rep = await self.fetch("/readyz")
        if rep.status != 200:
            raise NoReply(f"/readyz answered {rep.status}")
        for model in ("nade", "vae", "gan"):
            for s in range(1, 5):
                rep = await self.fetch(f"/sample?model={model}&seed={s}")
                if rep.status != 200 or not rep.body.startswith(b"\x89PNG"):
                    raise NoReply(f"/sample?model={model} answered {rep.status}")
                self.pngs.append(rep.body)
        pixels = bytes(self.rng.choice((0, 255)) for _ in range(784))
        self.pngs.append(png_gray(28, 28, pixels))
        self.heavy_body = json.dumps({"images": [{"png": base64.b64encode(self.pngs[i % len(self.pngs)]).decode()}
                                                 for i in range(256)], "k": 5000}).encode()

    async def run(self):
        try:
            await self.prepare()
        except (NoReply, OSError, asyncio.TimeoutError) as e:
            self.died = self.died or f"did not serve the set-up requests: {e}"
            return
        self.t0 = time.monotonic()  # the clock of the samples starts with the load
        self.end_at = self.t0 + SECONDS
        chosen, attack = self.attack_tasks()
        print(f"soak: {SECONDS:.0f} s, {CONCURRENCY} legitimate clients, attacks: {', '.join(chosen) or 'none'}; "
              f"port {self.port}, pid {self.proc.pid}, out {OUT}", flush=True)
        legit = [asyncio.ensure_future(self.legit_client(i)) for i in range(CONCURRENCY)]
        others = [asyncio.ensure_future(t) for t in attack]
        mon = asyncio.ensure_future(self.monitor())
        await asyncio.wait([mon], timeout=SECONDS + 5)
        self.stopping = True
        # Legitimate clients finish their request in flight (bounded by their timeouts); attacks are cut.
        await asyncio.wait(legit, timeout=FINISH_TIMEOUT_S)
        for t in legit + others + [mon]:
            t.cancel()
        await asyncio.gather(*legit, *others, mon, return_exceptions=True)

    async def final_checks(self):
        """Alive, /healthz 200, quiet RSS, and the rejection counters."""
        self.check_alive()
        if self.died:
            return None, None
        await asyncio.sleep(2.0)
        try:
            health = (await self.fetch("/healthz", 10.0)).status
            metrics = (await self.fetch("/metrics", 10.0)).body.decode("utf-8", "replace")
        except (NoReply, OSError, asyncio.TimeoutError) as e:
            return f"no reply ({type(e).__name__} {e})".replace(" )", ")"), ""
        return health, metrics

    def stop_daemon(self):
        if self.proc.poll() is not None:
            return f"already gone ({self.died})"
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return f"did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM (killed)"
        return f"exit status {rc}" if rc >= 0 else f"killed by {signal.Signals(-rc).name}"


def fmt_ms(v):
    return "-" if math.isnan(v) else f"{v * 1e3:.1f}"


def bucket(s):
    for b in (1, 5, 10, 30, 60, 120):
        if s < b:
            return f"<{b} s"
    return ">=120 s"


def slope_mb_per_10min(points):
    if len(points) < 3:
        return float("nan")
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mr = sum(r for _, r in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (r - mr) for t, r in points) / var * 600 if var > 0 else float("nan")


def main():
    if not os.access(BIN, os.X_OK):
        sys.exit(f"soak: {BIN} is not built (make)")
    soak = Soak()
    soak.start_daemon()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(soak.run())
        health, metrics = loop.run_until_complete(soak.final_checks())
        rss_end = soak.rss_mb()
    finally:
        stopped = soak.stop_daemon()
        loop.close()
    ok = report(soak, health, metrics, rss_end, stopped)
    sys.exit(0 if ok else 1)


def report(soak, health, metrics, rss_end, stopped):
    st = soak.stats
    ms = fmt_ms
    print(f"\nsoak: {soak.now():.0f} s; legitimate requests ({CONCURRENCY} clients)")
    print(f"{'kind':18} {'count':>8} {'non-2xx':>8} {'no reply':>8} {'bad body':>8} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'max ms':>8}")
    total = bad = 0
    every = array("d")
    for kind in sorted(st.legit):
        c, non2xx, noreply, badbody, lat = st.legit[kind]
        s = sorted(lat)
        total += c
        bad += non2xx + noreply + badbody
        every.extend(lat)
        print(f"{kind:18} {c:8d} {non2xx:8d} {noreply:8d} {badbody:8d} {ms(pct(s, 0.5)):>8} "
              f"{ms(pct(s, 0.99)):>8} {ms(s[-1] if s else float('nan')):>8}")
    every = sorted(every)
    print(f"{'all':18} {total:8d} {bad:8d} {'(failed)':>8} {'':8} {ms(pct(every, 0.5)):>8} {ms(pct(every, 0.99)):>8} "
          f"{ms(every[-1] if every else float('nan')):>8}")
    for f in st.failures:
        print(f"  failed: {f}")

    print("\nattacks: count by outcome (a status, or what happened to the connection)")
    for kind in sorted(st.attacks):
        c = st.attacks[kind]
        outs = ", ".join(f"{o} x{n}" for o, n in c.most_common())
        print(f"  {kind:20} {sum(c.values()):6d}  (longest {st.attack_max_s[kind]:.1f} s)  {outs}")
    for (kind, desc, outcome), n in sorted(st.hangs.items()):
        print(f"  hang: {kind} {desc}: {outcome} x{n}")

    # The start is the lowest sample in the minute after the warm-up: a heavy request in flight
    # can lift one sample by gigabytes, and a peak taken as the start would hide a leak.
    after = [(t, r) for t, r in soak.rss if t >= WARMUP_S]
    rss_start = min((r for t, r in after if t < after[0][0] + 60), default=float("nan"))
    rss_max = max((r for _, r in soak.rss), default=float("nan"))
    slope = slope_mb_per_10min(after)
    growth = (rss_end - rss_start) if rss_end is not None and after else float("nan")
    f1 = lambda v: "-" if v is None or math.isnan(v) else f"{v:.1f}"
    print(f"\nRSS MB: start (lowest of t={after[0][0] if after else 0:.0f}-{after[0][0] + 60 if after else 0:.0f} s, "
          f"after the {WARMUP_S:.0f} s warm-up) {f1(rss_start)}, "
          f"max {f1(rss_max)}, end {f1(rss_end)}, growth {f1(growth)} (margin {RSS_MARGIN_MB:.0f}), "
          f"slope {f1(slope)} MB per 10 min")
    alive = soak.died is None and health == 200
    print(f"daemon: {'alive' if soak.died is None else soak.died}; /healthz at the end: {health}; "
          f"SIGTERM: {stopped}")
    try:  # a sanitizer build says why it stopped
        with open(soak.log_path, errors="replace") as f:
            said = [l.rstrip() for l in f if re.search(r"ERROR: \w+Sanitizer|SUMMARY: |runtime error:", l)]
        for line in said[:6]:
            print(f"daemon log: {line}")
    except OSError:
        pass
    if metrics:
        rej = re.findall(r'^gmserve_rejections_total\{reason="(\w+)"\} (\d+)', metrics, re.M)
        print("rejections (/metrics): " + (", ".join(f"{r} {n}" for r, n in rej if n != "0") or "none"))

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "samples.csv"), "w") as f:
        f.write("t_s,rss_mb,legit_replies,legit_failed,attacks,p50_ms,p99_ms,max_ms\n")
        for t, rss, n, fail, att, p50, p99, mx in soak.series:
            f.write(f"{t:.1f},{f1(rss)},{n},{fail},{att},{ms(p50)},{ms(p99)},{ms(mx)}\n")

    problems = []
    if total == 0:
        problems.append("no legitimate request was made")
    if bad:
        problems.append(f"{bad} legitimate request(s) failed")
    if st.hang_count():
        problems.append(f"{st.hang_count()} complete attack request(s) got no reply (hang)")
    if not alive:
        problems.append("the daemon died or stopped answering")
    if math.isnan(growth):
        problems.append("no RSS sample after the warm-up and at the end to compare")
    elif growth > RSS_MARGIN_MB:
        problems.append(f"RSS grew {f1(growth)} MB after warm-up (margin {RSS_MARGIN_MB:.0f})")
    if stopped != "exit status 0":
        problems.append(f"SIGTERM: {stopped}")
    print(f"soak: {'FAIL: ' + '; '.join(problems) if problems else 'PASS'} (daemon log: {soak.log_path})")
    return not problems


if __name__ == "__main__":
    main()
