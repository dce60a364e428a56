"""The router component, the replicas-router overlay and the routing examples (manifests/…/router, …/routing).

The core objects are also validated strictly and scanned by tests/manifests/; here are the
facts that make the system work: the router finds the vLLM Pods, the vLLM Pods carry the flag
the router's cache-aware policy needs, the budget and the spread select the same Pods. The
custom resources are checked as far as a public schema allows: the HTTPRoute against the
Gateway API's published schema (npm @kubernetes-models/gateway-api, run with node), the
InferencePool and the LeaderWorkerSet against the fields of their projects' API types.
"""
from __future__ import annotations

import json
import re

from llmserve.core.names import system
from llmserve.core.objects import vllm_container
from llmserve.routing.fleet import ROUTER_VERSION
from llmserve.routing.policy import POLICIES
from llmserve.world import manifests
from tests.manifests import custom_resources as cr
from tests.manifests.test_custom_resources import node_models  # noqa: F401 - the fixture, reused
from tests.support import REPO

OBJECTS = manifests.render("overlays/replicas-router")
COMPONENT = REPO / "manifests" / "components" / "router"


def _one(kind: str, name: str | None = None) -> dict:
    found = [o for o in OBJECTS if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]


def _args(deployment: dict) -> list[str]:
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def _flag(args: list[str], name: str) -> str:
    for i, a in enumerate(args):
        if a == name:
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    raise AssertionError(f"{name} not in {args}")


N = system()
VLLM = _one("Deployment", N.deployment)
ROUTER = _one("Deployment", "vllm-router")
POD_LABELS = VLLM["spec"]["template"]["metadata"]["labels"]


def test_the_overlay_is_valid_and_adds_every_router_object_with_its_label():
    assert manifests.validate(OBJECTS) == []
    added = [o for o in OBJECTS if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "router"]
    assert sorted(o["kind"] for o in added) == sorted(["ServiceAccount", "Role", "RoleBinding", "Deployment",
                                                       "Service", "NetworkPolicy", "PodDisruptionBudget"])


def test_the_router_finds_exactly_the_vllm_pods_in_their_namespace():
    args = _args(ROUTER)
    assert "--service-discovery" in args
    key, value = _flag(args, "--selector").split("=")
    assert POD_LABELS[key] == value
    assert _flag(args, "--service-discovery-namespace") == N.namespace
    assert int(_flag(args, "--service-discovery-port")) == N.container_port
    role, binding = _one("Role"), _one("RoleBinding")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    sa = ROUTER["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": N.namespace}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_the_router_runs_a_known_policy_with_the_workers_key_and_the_pinned_image():
    args = _args(ROUTER)
    assert _flag(args, "--policy") in {p.flag for p in POLICIES.values() if p.flag}
    assert _flag(args, "--api-key") == "$(VLLM_API_KEY)"
    env = {e["name"]: e for e in ROUTER["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == N.api_key_secret
    image = ROUTER["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(f":{ROUTER_VERSION}")
    assert f"vllm-router=={ROUTER_VERSION}" in (COMPONENT / "image" / "Dockerfile").read_text()


def test_the_router_service_and_probes_point_at_named_ports():
    svc = _one("Service", "vllm-router")
    container = ROUTER["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} == set(ports)
    assert int(_flag(_args(ROUTER), "--port")) == ports["http"]
    assert int(_flag(_args(ROUTER), "--prometheus-port")) == ports["metrics"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readiness"
    assert container["livenessProbe"]["httpGet"]["path"] == "/liveness"
    assert svc["spec"]["selector"].items() <= ROUTER["spec"]["template"]["metadata"]["labels"].items()


def test_the_vllm_deployment_becomes_replicas_the_router_can_route_by_cache():
    spec = VLLM["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    args = vllm_container(VLLM)["args"]
    single = next(o for o in manifests.render("overlays/gpu-box") if o["kind"] == "Deployment")
    assert args == vllm_container(single)["args"] + ["--enable-scale-out"]     # appended, nothing lost
    spread, = spec["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"].items() <= POD_LABELS.items()
    pdb = _one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= POD_LABELS.items() and pdb["spec"]["maxUnavailable"] == 1


def test_the_router_deployment_is_hardened():
    pod = ROUTER["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] > 10000
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert set(c["resources"]["limits"]) == {"cpu", "memory"} and set(c["resources"]["requests"]) == {"cpu", "memory"}
    skips = [v for k, v in ROUTER["metadata"]["annotations"].items() if k.startswith("checkov.io/skip")]
    assert all(len(v.split("=", 1)[1]) > 40 for v in skips)


# ------------------------------------------------------------------ custom resources

EXAMPLES = REPO / "manifests" / "examples" / "routing"


def test_the_inference_pool_selects_the_vllm_pods_as_gie_v1_defines_it():
    pool = manifests.load_one(EXAMPLES / "inferencepool.yaml")
    assert (pool["apiVersion"], pool["kind"]) == ("inference.networking.k8s.io/v1", "InferencePool")
    spec = pool["spec"]
    # api/v1/inferencepool_types.go: selector (matchLabels only), one target port, the picker.
    assert set(spec) == {"selector", "targetPorts", "endpointPickerRef"}
    assert set(spec["selector"]) == {"matchLabels"} and spec["selector"]["matchLabels"].items() <= POD_LABELS.items()
    (port,) = spec["targetPorts"]
    assert set(port) == {"number"} and port["number"] == N.container_port
    ref = spec["endpointPickerRef"]
    assert set(ref) <= {"group", "kind", "name", "portNumber", "failureMode"} and ref["name"]
    assert 1 <= ref["portNumber"] <= 65535 and ref["failureMode"] in ("FailOpen", "FailClose")


def test_the_leader_worker_set_spans_its_nodes_with_shared_memory():
    lws = manifests.load_one(EXAMPLES / "leaderworkerset.yaml")
    assert (lws["apiVersion"], lws["kind"]) == ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
    tpl = lws["spec"]["leaderWorkerTemplate"]
    assert set(tpl) == {"size", "restartPolicy", "leaderTemplate", "workerTemplate"}
    assert tpl["restartPolicy"] == "RecreateGroupOnPodRestart" and tpl["size"] >= 2
    for role in ("leaderTemplate", "workerTemplate"):
        pod = tpl[role]["spec"]
        c = pod["containers"][0]
        shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"]["medium"] == "Memory"
        assert any(m["mountPath"] == "/dev/shm" for m in c["volumeMounts"])
        gpus = int(c["resources"]["limits"]["nvidia.com/gpu"])
        assert f"--tensor-parallel-size={gpus}" in c["args"]
        assert "--pipeline-parallel-size=$(LWS_GROUP_SIZE)" in c["args"]
    assert "--headless" in tpl["workerTemplate"]["spec"]["containers"][0]["args"]
    assert "--node-rank=$(LWS_WORKER_INDEX)" in tpl["workerTemplate"]["spec"]["containers"][0]["args"]


def test_the_http_route_is_valid_against_the_gateway_api_schema_and_the_check_bites(node_models):
    route = manifests.load_one(EXAMPLES / "httproute.yaml")
    broken = json.loads(json.dumps(route))
    broken["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"       # not an allowed value
    wrong_port = json.loads(json.dumps(route))
    wrong_port["spec"]["rules"][0]["backendRefs"][0]["port"] = 70000
    result = cr.validate([("ok", route), ("type", broken), ("port", wrong_port)])
    assert result["ok"] is None, result["ok"]
    assert result["type"] and "allowed values" in result["type"]
    assert result["port"] and "65535" in result["port"]


def test_the_pool_and_the_set_are_named_cluster_only():
    for f in ("inferencepool.yaml", "leaderworkerset.yaml"):
        assert cr.group_of(manifests.load_one(EXAMPLES / f)) in cr.LIVE_ONLY, f


def test_the_http_route_sends_to_the_pool():
    route = manifests.load_one(EXAMPLES / "httproute.yaml")
    pool = manifests.load_one(EXAMPLES / "inferencepool.yaml")
    (backend,) = route["spec"]["rules"][0]["backendRefs"]
    assert (backend["group"], backend["kind"], backend["name"]) == (
        "inference.networking.k8s.io", "InferencePool", pool["metadata"]["name"])
    assert route["metadata"]["namespace"] == pool["metadata"]["namespace"] == N.namespace


def test_every_custom_resource_file_says_how_only_a_cluster_can_check_it():
    for f in EXAMPLES.glob("*.yaml"):
        assert re.search(r"kubectl apply --dry-run=server -f manifests/examples/routing/" + f.name,
                         f.read_text()), f.name
