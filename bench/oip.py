"""The cost of the request and reply formats, for one batch of 16 images
through the VAE's encode: /v1 with JSON pixels, /v2 with a JSON UINT8
tensor, and /v2 with the binary tensor data extension both ways. Starts
build/gmserve (or argv[1]) on a loopback port; prints each format's request
and reply bytes and the median latency of 60 requests (after 5 to warm up),
with the 10th and 90th percentiles. Standard library only; a few seconds.
"""
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

N, REPS = 16, 60


def main():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.NamedTemporaryFile("w", suffix=".json") as empty:
        empty.write("{}")
        empty.flush()
        proc = subprocess.Popen([sys.argv[1] if len(sys.argv) > 1 else "build/gmserve", "--config", empty.name,
                                 "--listen", f"127.0.0.1:{port}", "--model", "vae=models/vae.safetensors",
                                 "--log-format", "off"], stderr=subprocess.DEVNULL)
        try:
            run(f"http://127.0.0.1:{port}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait()


def run(base):
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/v2/health/ready").close()
            break
        except OSError:
            time.sleep(0.1)
    px = [(i * 37) % 256 for i in range(N * 784)]
    outputs = [{"name": "z"}, {"name": "logvar"}]
    v1 = json.dumps({"images": [{"pixels": [v / 255 for v in px[i * 784:(i + 1) * 784]]} for i in range(N)]})
    v2 = json.dumps({"inputs": [{"name": "images", "shape": [N, 28, 28, 1], "datatype": "UINT8", "data": px}],
                     "outputs": outputs})
    head = json.dumps({"inputs": [{"name": "images", "shape": [N, 28, 28, 1], "datatype": "UINT8",
                                   "parameters": {"binary_data_size": N * 784}}],
                       "outputs": outputs, "parameters": {"binary_data_output": True}}).encode()
    cases = [("/v1 encode, JSON pixels", "/v1/models/vae/encode", v1.encode(), {"Content-Type": "application/json"}),
             ("/v2 infer, JSON UINT8 in and FP32 out", "/v2/models/vae/infer", v2.encode(),
              {"Content-Type": "application/json"}),
             ("/v2 infer, binary UINT8 in and FP32 out", "/v2/models/vae/infer", head + bytes(px),
              {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))})]
    print(f"| format ({N} images, VAE encode) | request bytes | reply bytes | median ms | p10-p90 ms |")
    print("|---|---|---|---|---|")
    for name, path, body, headers in cases:
        times = []
        for i in range(5 + REPS):
            t = time.perf_counter()
            with urllib.request.urlopen(urllib.request.Request(base + path, data=body, headers=headers)) as r:
                size = len(r.read())
            if i >= 5:
                times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        print(f"| {name} | {len(body)} | {size} | {statistics.median(times):.2f} | "
              f"{times[REPS // 10]:.2f}-{times[REPS * 9 // 10]:.2f} |")


if __name__ == "__main__":
    main()
