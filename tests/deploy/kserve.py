"""make test-kserve: the KServe manifests of k8s/kserve, without a cluster.

1. `kubectl kustomize k8s/kserve` renders them; the InferenceService must
   name the ServingRuntime, a model format it supports and the protocol v2
   it speaks; the runtime's probes must ask /v2/health/* on the container's
   port; the pod must run as the image's numeric user with a read-only root.
2. The runtime's container command line runs for real: build/gmserve (the
   image's ENTRYPOINT) with the runtime's args and env, the image's config
   file (docker/gmserve.json, GMSERVE_CONFIG in the image), {{.Name}} as
   KServe fills it (the InferenceService's name) and /mnt/models as the
   storage initializer leaves it (a folder with model.safetensors). Only
   the listen address becomes a free loopback port. The probes' paths must
   answer 200, and the model must answer an infer request under the
   InferenceService's name.
Needs kubectl and python3-yaml (apt-get install kubectl python3-yaml).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
GMSERVE = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "gmserve"))


def fail(msg):
    print(f"test-kserve: FAIL: {msg}")
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def render():
    out = subprocess.run(["kubectl", "kustomize", os.path.join(ROOT, "k8s", "kserve")], capture_output=True, text=True)
    check(out.returncode == 0, f"kubectl kustomize k8s/kserve: {out.stderr}")
    docs = {d["kind"]: d for d in yaml.safe_load_all(out.stdout)}
    check(set(docs) == {"ServingRuntime", "InferenceService"}, f"rendered kinds {sorted(docs)}")
    return docs["ServingRuntime"], docs["InferenceService"]


def check_manifests(rt, isvc):
    check(rt["apiVersion"] == "serving.kserve.io/v1alpha1", "ServingRuntime apiVersion")
    check(isvc["apiVersion"] == "serving.kserve.io/v1beta1", "InferenceService apiVersion")
    model = isvc["spec"]["predictor"]["model"]
    check(model["runtime"] == rt["metadata"]["name"], "the InferenceService names the runtime")
    check(model["protocolVersion"] == "v2" and "v2" in rt["spec"]["protocolVersions"], "protocol v2 on both")
    formats = {(f["name"], f.get("version")) for f in rt["spec"]["supportedModelFormats"]}
    check((model["modelFormat"]["name"], model["modelFormat"].get("version")) in formats,
          f"model format {model['modelFormat']} is one of the runtime's {formats}")
    check(model.get("storageUri"), "the InferenceService has a storageUri")
    (c,) = rt["spec"]["containers"]
    check(c["name"] == "kserve-container", "KServe's container name")
    check(c["image"].split("/")[-1].split(":")[0] == "gmserve", f"image {c['image']}")
    port = c["ports"][0]["containerPort"]
    for probe, path in (("readinessProbe", "/v2/health/ready"), ("livenessProbe", "/v2/health/live")):
        check(c[probe]["httpGet"] == {"path": path, "port": port}, f"{probe} asks {path} on {port}")
    sc = c["securityContext"]
    check(sc["runAsNonRoot"] and sc["runAsUser"] == 10001 and sc["readOnlyRootFilesystem"], "securityContext")
    check(f"0.0.0.0:{port}" in c["args"], "gmserve listens on the container port")
    return c


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_container(c, name):
    tmp = tempfile.mkdtemp(prefix="gmserve-kserve-")
    models = os.path.join(tmp, "mnt-models")
    os.mkdir(models)
    shutil.copy(os.path.join(ROOT, "models", "nade.safetensors"), os.path.join(models, "model.safetensors"))
    port = free_port()
    args = [a.replace("{{.Name}}", name).replace("/mnt/models", models) for a in c["args"]]
    args[args.index("--listen") + 1] = f"127.0.0.1:{port}"
    env = dict(os.environ, GMSERVE_CONFIG=os.path.join(ROOT, "docker", "gmserve.json"))
    env.update({e["name"]: e["value"] for e in c.get("env", [])})
    log = open(os.path.join(tmp, "gmserve.log"), "w+")
    proc = subprocess.Popen([GMSERVE] + args, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(base + c["readinessProbe"]["httpGet"]["path"], timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            check(proc.poll() is None, "gmserve exited: " + open(log.name).read()[-1500:])
            time.sleep(0.1)
        else:
            fail("the readiness probe never answered 200")
        with urllib.request.urlopen(base + c["livenessProbe"]["httpGet"]["path"], timeout=5) as r:
            check(r.status == 200, "the liveness probe")
        with urllib.request.urlopen(f"{base}/v2/models/{name}", timeout=5) as r:
            meta = json.loads(r.read())
        check(meta["name"] == name, f"the model is served as {name}")
        req = json.dumps({"inputs": [{"name": "n", "shape": [1], "datatype": "INT64", "data": [1]},
                                     {"name": "seed", "shape": [1], "datatype": "INT64", "data": [3]}],
                          "outputs": [{"name": "logp"}]}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{base}/v2/models/{name}/infer", data=req,
                                                           headers={"Content-Type": "application/json"}),
                                    timeout=30) as r:
            out = json.loads(r.read())["outputs"][0]
        check(out["name"] == "logp" and out["shape"] == [1], f"infer reply {out}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        log.close()
        shutil.rmtree(tmp)
    check(rc == 0, f"gmserve exited {rc} after SIGTERM")


def main():
    check(shutil.which("kubectl"), "kubectl is needed for 'kubectl kustomize' (apt-get install kubectl)")
    check(os.access(GMSERVE, os.X_OK), f"{GMSERVE} is not built (make)")
    rt, isvc = render()
    container = check_manifests(rt, isvc)
    run_container(container, isvc["metadata"]["name"] + "-digits")  # a name other than the config file's models
    print("test-kserve: ok (manifests rendered and checked; the runtime's command line served v2)")


if __name__ == "__main__":
    main()
