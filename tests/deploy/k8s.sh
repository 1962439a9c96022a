#!/usr/bin/env bash
# make test-k8s: the Kubernetes manifests of k8s/, rendered and run for real.
#
# 1. `kubectl kustomize` renders k8s/base and both overlays, and each
#    rendering is checked: the Service and PodDisruptionBudget select the
#    pods, the config the pods mount is the ConfigMap rendered with them, the
#    three probes ask /readyz and /healthz, requests and limits are set, the
#    pod runs as the image's numeric user with a read-only root, and the
#    grace period outlasts the preStop sleep plus the ConfigMap's
#    drain_timeout_s.
# 2. `podman kube play` runs the dev overlay's Deployment and ConfigMap (the
#    kinds it knows; it has no Service, PDB or autoscaler) on a network of
#    its own, port published on 127.0.0.1 only. The pod must become ready,
#    /sample must give a PNG, the process must run as uid/gid 10001 on a
#    root filesystem it cannot write, and the liveness probe (a container
#    healthcheck under podman) must pass.
# 3. Deleting the pod under load: podman runs no preStop hook, has no
#    endpoints to drain and ignores terminationGracePeriodSeconds, so the
#    test does what the kubelet does after the preStop: SIGTERM to the
#    container, SIGKILL only once the manifest's grace period has passed
#    (`podman stop -t GRACE`), and the pod's sandbox last (`podman pod
#    stop`). Not `podman pod stop -t GRACE` alone: it stops the pause
#    container at once with the others, which tears the pod's network down
#    while gmserve still drains, and the answers it then writes are lost
#    (measured: 35 of 40 requests got no reply although gmserve logged 200
#    for each). Each of 40 slow requests in flight must be answered 200 (or
#    503 if it came after the drain began), and the server must exit 0.
# `podman kube down` and the removal of the ConfigMap's volume and the
# network run on every exit; the test fails if any of them is left.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "test-k8s: FAIL: $*"; exit 1; }
out=build/k8s
port=${GMSERVE_K8S_PORT:-18490}
base=http://127.0.0.1:$port
image=localhost/gmserve:k8s-test # its own tag: test-deploy may rebuild :latest meanwhile
net=gmserve-k8s-test
mkdir -p "$out"

command -v kubectl > /dev/null ||
    fail "kubectl is needed for 'kubectl kustomize' (apt-get install kubectl, or see kubernetes.io/docs/tasks/tools)"
# catatonit: podman's pause container for pods is built from it
missing=()
for p in podman runc catatonit netavark aardvark-dns iptables debootstrap python3-yaml; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! grep -q 'network_backend = "netavark"' /etc/containers/containers.conf 2>/dev/null; then
    mkdir -p /etc/containers # as tests/deploy/run.sh sets it
    printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n[network]\nnetwork_backend = "netavark"\n' \
        > /etc/containers/containers.conf
fi

# ---- 1. render and check ----
for o in base overlays/dev overlays/prod; do
    kubectl kustomize "k8s/$o" > "$out/$(basename "$o").yaml" 2> "$out/render.log" ||
        { cat "$out/render.log"; fail "kubectl kustomize k8s/$o"; }
done
python3 - "$out" <<'PY' || fail "a rendered manifest is inconsistent (above)"
import json, sys, yaml
out = sys.argv[1]
bad = []
for name in ("base", "dev", "prod"):
    docs = {}
    for d in yaml.safe_load_all(open(f"{out}/{name}.yaml")):
        docs.setdefault(d["kind"], []).append(d)
    dep = docs["Deployment"][0]
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    c = spec["containers"][0]
    sc = c["securityContext"]
    def check(ok, what):
        if not ok: bad.append(f"{name}: {what}")
    def selects(sel):
        return all(labels.get(k) == v for k, v in sel.items())
    check(selects(dep["spec"]["selector"]["matchLabels"]), "the Deployment's selector misses its pods")
    check(selects(docs["Service"][0]["spec"]["selector"]), "the Service selects no pod")
    for pdb in docs.get("PodDisruptionBudget", []):
        check(selects(pdb["spec"]["selector"]["matchLabels"]), "the PodDisruptionBudget selects no pod")
    for hpa in docs.get("HorizontalPodAutoscaler", []):
        check(hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], "the autoscaler scales another Deployment")
        check(any(m.get("resource", {}).get("name") == "cpu" for m in hpa["spec"]["metrics"]), "no CPU metric")
    cms = {m["metadata"]["name"]: m for m in docs["ConfigMap"]}
    vol = [v for v in spec["volumes"] if "configMap" in v][0]
    check(vol["configMap"]["name"] in cms, "the pods mount a ConfigMap that is not rendered")
    settings = json.loads(cms[vol["configMap"]["name"]]["data"]["gmserve.json"])
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness is not /readyz")
    check("/healthz" in json.dumps(c["livenessProbe"]), "liveness does not ask /healthz")
    check("/healthz" in json.dumps(c["startupProbe"]), "no startup probe on /healthz")
    check(all(k in c["resources"].get(r, {}) for r in ("requests", "limits") for k in ("cpu", "memory")),
          "requests and limits of cpu and memory are not all set")
    check(sc.get("runAsNonRoot") is True and spec["securityContext"].get("runAsNonRoot") is True, "runAsNonRoot")
    check(sc.get("runAsUser") == 10001 and sc.get("runAsGroup") == 10001, "not uid/gid 10001")
    check(sc.get("readOnlyRootFilesystem") is True, "the root filesystem is writable")
    pre = c["lifecycle"]["preStop"]["exec"]["command"]
    sleep_s = int(pre[1]) if pre[0] == "sleep" else 0
    drain = settings.get("drain_timeout_s", 30)
    grace = spec["terminationGracePeriodSeconds"]
    check(grace > sleep_s + drain, f"grace period {grace} s <= preStop {sleep_s} s + drain_timeout_s {drain} s")
    check(settings["listen"].endswith(":8080"), "gmserve does not listen on the container port")
    print(f"test-k8s: {name}: {', '.join(sorted(docs))}; grace {grace} s > preStop {sleep_s} s + drain {drain} s")
for b in bad: print("test-k8s:", b)
sys.exit(1 if bad else 0)
PY

# ---- 2. run the dev overlay with podman kube play ----
bash scripts/make-base-image.sh
echo "test-k8s: building the image ..."
podman build -q --network host --format docker -f docker/Dockerfile -t "$image" . > "$out/build.log" 2>&1 ||
    { tail -20 "$out/build.log"; fail "podman build"; }
[ "$(podman image inspect --format '{{.Config.User}}' "$image")" = 10001:10001 ] ||
    fail "the image's USER is not 10001:10001, the manifests' runAsUser"
python3 - "$out" "$image" "$port" <<'PY'
import sys, yaml
out, image, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
docs = [d for d in yaml.safe_load_all(open(f"{out}/dev.yaml")) if d["kind"] in ("Deployment", "ConfigMap")]
for d in docs:
    if d["kind"] == "Deployment":
        c = d["spec"]["template"]["spec"]["containers"][0]
        c["image"] = image
        for p in c["ports"]:  # kube play publishes container ports; keep it on loopback
            p.update(hostIP="127.0.0.1", hostPort=port)
        open(f"{out}/grace", "w").write(str(d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]))
    else:
        open(f"{out}/configmap", "w").write(d["metadata"]["name"])
yaml.safe_dump_all(docs, open(f"{out}/play.yaml", "w"))
PY
grace=$(cat "$out/grace")
configmap=$(cat "$out/configmap")

leftovers() {
    podman pod ps --format '{{.Name}}' | grep '^gmserve-pod' || true
    podman ps -a --format '{{.Names}}' | grep '^gmserve-pod' || true
    podman volume ls --format '{{.Name}}' | grep -x "$configmap" || true
    podman network ls --format '{{.Name}}' | grep -x "$net" || true
}
cleanup() {
    podman kube down "$out/play.yaml" > "$out/down.log" 2>&1 || true
    podman volume rm -f "$configmap" > /dev/null 2>&1 || true # kube play's copy of the ConfigMap
    podman network rm -f "$net" > /dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

podman network create "$net" > /dev/null
start=$(date +%s%N)
podman kube play --network "$net" "$out/play.yaml" > "$out/play.log" 2>&1 || { cat "$out/play.log"; fail "podman kube play"; }
podname=$(podman pod ps --format '{{.Name}}' | grep '^gmserve-pod' | head -1)
container=$(podman ps --format '{{.Names}}' | grep "^$podname-gmserve" | head -1)
[ -n "$container" ] || { cat "$out/play.log"; fail "no gmserve container in the pod"; }
ready=""
for _ in $(seq 200); do
    if curl -sf --max-time 1 "$base/readyz" > /dev/null; then ready=$(( ($(date +%s%N) - start) / 1000000 )); break; fi
    sleep 0.1
done
[ -n "$ready" ] || { podman logs "$container" 2>&1 | tail -5; fail "/readyz not 200 within 20 s"; }
echo "test-k8s: pod $podname ready in $ready ms (kube play to /readyz 200)"

curl -sf "$base/sample?model=gan&n=16" -o "$out/grid.png" || fail "/sample failed"
[ "$(head -c 8 "$out/grid.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "/sample is not a PNG"
pid=$(podman inspect --format '{{.State.Pid}}' "$container")
uids=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")
gids=$(awk '/^Gid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")
[ "$uids" = "10001 10001 10001 10001" ] && [ "$gids" = "10001 10001 10001 10001" ] ||
    fail "gmserve runs as uid ($uids) gid ($gids), not 10001"
root_opts=$(awk '$2 == "/" {print $4}' "/proc/$pid/mounts" | tail -1)
case ",$root_opts," in *,ro,*) ;; *) fail "the root filesystem is mounted $root_opts, not read-only" ;; esac
podman healthcheck run "$container" > /dev/null || fail "the liveness probe (healthcheck) failed"
echo "test-k8s: PNG from /sample; uid/gid 10001 (from /proc); root filesystem read-only; liveness probe passes"

# ---- 3. delete the pod under load ----
curl -sf "$base/sample?model=nade&seed=1" -o "$out/nade.png"
for i in $(seq 40); do
    curl -s --max-time 60 -o /dev/null -w '%{http_code}\n' -X POST "$base/v1/models/vae/logp?k=5000&seed=$i" \
        -H 'Content-Type: image/png' --data-binary @"$out/nade.png" &
done > "$out/stop-load.txt"
sleep 0.3
t0=$(date +%s%N)
podman stop -t "$grace" "$container" > "$out/stop.log" 2>&1 || { cat "$out/stop.log"; fail "podman stop"; }
stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
podman pod stop "$podname" >> "$out/stop.log" 2>&1 || { cat "$out/stop.log"; fail "podman pod stop"; }
wait
podman logs "$container" > "$out/gmserve.log" 2>&1 || true
codes=$(sort "$out/stop-load.txt" | uniq -c | tr -s ' ' | tr '\n' ';')
echo "test-k8s: gmserve stopped (SIGTERM, grace $grace s) in $stop_ms ms, then the pod; replies: $codes"
grep -Evq '^(200|503)$' "$out/stop-load.txt" && fail "a request failed while the pod was deleted ($codes)"
grep -q '^200$' "$out/stop-load.txt" || fail "no request in flight was answered ($codes)"
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$container")
[ "$exit_code" = 0 ] || fail "gmserve exited $exit_code"

trap - EXIT
cleanup
left=$(leftovers)
[ -z "$left" ] || fail "left after kube down: $left"
echo "test-k8s: kube down left no pod, container, volume or network"
echo "test-k8s: all checks passed"
