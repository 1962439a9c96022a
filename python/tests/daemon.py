"""daemon.py - what the Python tests need to drive a real gmserve: GMSERVE
(build/gmserve, or $GMSERVE) serving model files on a free loopback port,
HTTP requests to it, and its exit status after SIGTERM. Standard library
only, so that a test importing it needs nothing else (test_oip.py is a
client with only the standard library)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
GMSERVE = os.environ.get("GMSERVE", os.path.join(HERE, "..", "..", "build", "gmserve"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """GMSERVE serving model files on a free loopback port. Its directory
    (self.dir) holds what the test writes there (model files), an empty
    config (so that config/gmserve.json does not apply) and its log."""

    def __init__(self, prefix):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.proc = self.log = None

    def start(self, models, ready="/readyz"):
        """Serves models {name: path} (--log-format off) and waits up to 30 s
        for ready to answer 200; raises RuntimeError with the log when it
        does not."""
        config = os.path.join(self.dir, "empty.json")
        with open(config, "w") as f:
            f.write("{}\n")
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "gmserve.log"), "w+")
        args = [GMSERVE, "--config", config, "--listen", f"127.0.0.1:{self.port}", "--log-format", "off"]
        for name, path in models.items():
            args += ["--model", f"{name}={path}"]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        for _ in range(300):
            try:
                with urllib.request.urlopen(self.url(ready), timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        rc, text = self.stop()
        raise RuntimeError(f"gmserve did not become ready (exit {rc}): {text}")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, path, body=None, headers=None):
        """GET path, or POST the bytes body: (status, headers (names
        case-insensitive), body bytes), error statuses included."""
        req = urllib.request.Request(self.url(path), data=body, headers=headers or {},
                                     method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def post_json(self, path, body, accept=None):
        """POSTs body (a JSON value) to path: (status, headers, body bytes)."""
        headers = {"Content-Type": "application/json"}
        if accept:
            headers["Accept"] = accept
        return self.request(path, json.dumps(body).encode(), headers)

    def stop(self):
        """SIGTERM (SIGKILL after 60 s), then (exit status, the log's last
        2000 characters); the directory is removed."""
        rc = None
        if self.proc:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        text = ""
        if self.log:
            self.log.seek(0)
            text = self.log.read()[-2000:]
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc, text

    def close(self):
        """stop(); raises AssertionError unless gmserve exited 0 after SIGTERM."""
        rc, text = self.stop()
        if rc != 0:
            raise AssertionError(f"gmserve exited {rc} after SIGTERM: {text}")
