"""The stack as one kustomization: base and every overlay render, validate and keep the invariants;
and the Job that runs vLLM's benchmark inside the cluster.

Each invariant cites the documentation that makes it necessary. The expected
values are the course's design, not read from the files under test.
"""
from __future__ import annotations

import re

import pytest

from llmserve.core.names import system
from llmserve.core.quantity import GIB, parse_quantity
from llmserve.stack import order
from llmserve.world import manifests
from tests.support import REPO

#: The capstone's stacks: the base and the overlays the stack lab can apply (llmserve.stack.order.OVERLAYS).
#: Overlays of later chapters (routing, observability) are checked by their own tests.
STACKS = ["base"] + [f"overlays/{name}" for name in order.OVERLAYS]
NAMESPACE = "ai-platform"


SYSTEM = sorted(["Namespace", "PersistentVolume", "PersistentVolumeClaim", "Secret", "Deployment", "Service"])
#: Overlays that add objects of their own in front of the system (the API gateway, book/api-key.md).
ADDING = {"overlays/gpu-box-gateway"}


def test_both_overlays_exist():
    assert {"overlays/gpu-box", "overlays/laptop-cpu"} <= set(STACKS)
    for name in order.OVERLAYS:     # each overlay the lab offers is a kustomization in manifests/overlays
        assert (REPO / "manifests" / "overlays" / name / "kustomization.yaml").is_file(), name


@pytest.fixture(scope="module", params=STACKS)
def rendered(request):
    return request.param, manifests.render(request.param)


def one(objs, kind):
    """The system's object of this kind (by its name in manifests/base when an overlay adds more)."""
    found = [o for o in objs if o["kind"] == kind]
    names = {"Deployment": system().deployment, "Service": system().service}
    if len(found) > 1 and kind in names:
        found = [o for o in found if o["metadata"]["name"] == names[kind]]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(objs):
    return one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def test_renders_and_validates_strictly_for_every_supported_version(rendered):
    name, objs = rendered
    problems = manifests.validate(objs)   # strict: unknown fields are errors, for 1.35, 1.36 and 1.37
    assert not problems, f"{name}:\n" + "\n".join(map(str, problems))


def test_the_whole_system_is_there(rendered):
    name, objs = rendered
    kinds = sorted(o["kind"] for o in objs)
    if name in ADDING:
        assert all(kinds.count(k) >= SYSTEM.count(k) for k in SYSTEM), kinds
    else:
        assert kinds == SYSTEM


def test_namespace_ai_platform_everywhere(rendered):
    # PersistentVolume and Namespace are cluster-scoped (kubernetes.io/docs/concepts/overview/
    # working-with-objects/namespaces/#not-all-objects-are-in-a-namespace); everything else is namespaced.
    _, objs = rendered
    assert one(objs, "Namespace")["metadata"]["name"] == NAMESPACE
    for obj in objs:
        if obj["kind"] in ("Namespace", "PersistentVolume"):
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["kind"]


def test_every_object_carries_the_course_label(rendered):
    # Cluster.cleanup() deletes only objects carrying it.
    _, objs = rendered
    for obj in objs:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "vllm-course", obj["kind"]


def test_claim_is_pre_bound_to_the_volume(rendered):
    # kubernetes.io/docs/concepts/storage/persistent-volumes/#reserving-a-persistentvolume:
    # volumeName on the claim and claimRef on the volume; storageClassName "" on both keeps the
    # default StorageClass from provisioning a fresh empty volume.
    _, objs = rendered
    pv, pvc = one(objs, "PersistentVolume"), one(objs, "PersistentVolumeClaim")
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    assert pv["spec"]["claimRef"] == {"namespace": NAMESPACE, "name": pvc["metadata"]["name"]}
    assert pv["spec"]["storageClassName"] == "" and pvc["spec"]["storageClassName"] == ""
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["hostPath"]["path"] == "/models"


def test_model_volume_is_mounted_read_only(rendered):
    # Access modes do not enforce read-only (persistent-volumes/#access-modes); the mount does.
    _, objs = rendered
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    claim = one(objs, "PersistentVolumeClaim")["metadata"]["name"]
    volume = next(v for v in pod["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim)
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    mount = next(m for m in container(objs)["volumeMounts"] if m["name"] == volume["name"])
    assert mount["mountPath"] == "/models" and mount["readOnly"] is True


def test_recreate_strategy(rendered):
    # kubernetes.io/docs/concepts/workloads/controllers/deployment/#recreate-deployment
    _, objs = rendered
    assert one(objs, "Deployment")["spec"]["strategy"]["type"] == "Recreate"


def test_images_are_pinned(rendered):
    # kubernetes.io/docs/concepts/containers/images/#image-names: no tag means :latest.
    _, objs = rendered
    for c in one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]:
        image = c["image"]
        assert "@sha256:" in image or re.fullmatch(r"[^:@]+:[^:@]+", image), image
        tag = image.split("@")[0].rsplit(":", 1)[-1]
        assert tag != "latest" and not tag.startswith("latest"), image
        assert tag.startswith("v0.32.0"), f"{image}: the course pins vLLM 0.32.0"


def test_requests_limits_and_all_three_probes(rendered):
    # kubernetes.io/docs/concepts/configuration/manage-resources-containers/ and
    # kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/
    _, objs = rendered
    c = container(objs)
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert "memory" in c["resources"]["limits"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["path"] == "/health", probe
    # The startup probe's budget must cover loading the model (minutes on a GPU box: book/deployment.md).
    sp = c["startupProbe"]
    assert sp.get("initialDelaySeconds", 0) + sp["periodSeconds"] * sp["failureThreshold"] >= 300


def test_the_secret_the_pod_reads_exists_with_that_key(rendered):
    _, objs = rendered
    refs = [e["valueFrom"]["secretKeyRef"] for e in container(objs).get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})]
    assert refs, "the Deployment reads no Secret"
    secrets_by_name = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}
    for ref in refs:
        assert ref["name"] in secrets_by_name, ref
        assert ref["key"] in secrets_by_name[ref["name"]].get("stringData", {}), ref


def test_committed_key_is_an_obvious_placeholder(rendered):
    # Never a real key in git: the committed value is 'change-me' and apply_stack() replaces it.
    _, objs = rendered
    secret = one(objs, "Secret")
    assert order.secret_value(secret) == "change-me"
    replaced = order.with_api_key(objs, "a-real-key")
    assert order.secret_value(one(replaced, "Secret")) == "a-real-key"
    assert order.secret_value(secret) == "change-me", "with_api_key must not modify its input"


def test_the_by_hand_apply_leaves_out_exactly_the_secret(rendered):
    # `kubectl apply -k … -l 'app.kubernetes.io/component!=api-key'` applies every object but the
    # Secret (a selector `key!=value` also matches objects without the key: Kubernetes docs, Labels
    # and Selectors), so the key created by hand first is never overwritten by the placeholder.
    _, objs = rendered
    key, value = order.SECRET_COMPONENT
    left_out = [o for o in objs if (o["metadata"].get("labels") or {}).get(key) == value]
    assert [o["kind"] for o in left_out] == ["Secret"]


def test_service_selects_the_pod_and_targets_its_port(rendered):
    _, objs = rendered
    svc, dep = one(objs, "Service"), one(objs, "Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    port_names = {p["name"] for p in container(objs)["ports"]}
    assert svc["spec"]["ports"][0]["port"] == 8000 and svc["spec"]["ports"][0]["targetPort"] in port_names


# ------------------------------------------------------------ overlay-specific

def args_of(objs) -> dict:
    out = {}
    for a in container(objs)["args"]:
        k, _, v = a.partition("=")
        out[k] = v
    return out


def test_gpu_box_asks_for_one_gpu_and_tolerates_the_gpu_taint():
    # kubernetes.io/docs/tasks/manage-gpus/scheduling-gpus/: GPUs are given in limits (requests = limits).
    objs = manifests.render("overlays/gpu-box")
    res = container(objs)["resources"]
    assert res["limits"]["nvidia.com/gpu"] == "1" and res["requests"]["nvidia.com/gpu"] == "1"
    tolerations = one(objs, "Deployment")["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    assert container(objs)["image"] == "vllm/vllm-openai:v0.32.0"


def test_gpu_box_is_the_base_plus_only_the_toleration():
    base, gpu = manifests.render("base"), manifests.render("overlays/gpu-box")
    gpu_dep = one(gpu, "Deployment")
    tol = gpu_dep["spec"]["template"]["spec"].pop("tolerations")
    assert tol and gpu_dep == one(base, "Deployment")
    assert [o for o in gpu if o["kind"] != "Deployment"] == [o for o in base if o["kind"] != "Deployment"]


def test_laptop_cpu_has_no_gpu_and_sizes_the_cpu_cache():
    objs = manifests.render("overlays/laptop-cpu")
    c = container(objs)
    # vLLM CPU docs: official CPU images are vllm/vllm-openai-cpu:v<version>-x86_64 (or -arm64).
    assert re.fullmatch(r"vllm/vllm-openai-cpu:v0\.32\.0-(x86_64|arm64)", c["image"]), c["image"]
    text = manifests.to_yaml(objs)
    assert "nvidia.com/gpu" not in text
    env = {e["name"]: e.get("value") for e in c["env"]}
    # VLLM_CPU_KVCACHE_SPACE is read with int(): whole GiB (vLLM docs, CPU installation).
    assert int(env["VLLM_CPU_KVCACHE_SPACE"]) >= 1
    args = args_of(objs)
    assert "--quantization" not in args and "--gpu-memory-utilization" not in args
    assert args["--model"].startswith("/models/") and "0.5b" in args["--model"].lower()
    assert int(args["--max-model-len"]) <= 32768


def test_laptop_cpu_probes_allow_a_slow_busy_cpu():
    # configure-liveness-readiness-startup-probes: timeoutSeconds defaults to 1 s.
    c = container(manifests.render("overlays/laptop-cpu"))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe].get("timeoutSeconds", 1) >= 3, probe
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 30


def test_laptop_cpu_memory_limit_holds_the_cache_and_shm():
    objs = manifests.render("overlays/laptop-cpu")
    c = container(objs)
    limit = parse_quantity(c["resources"]["limits"]["memory"])
    kv = int(next(e["value"] for e in c["env"] if e["name"] == "VLLM_CPU_KVCACHE_SPACE")) * GIB
    shm = next(v for v in one(objs, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "dshm")
    # memory-backed emptyDir counts against the limit (kubernetes.io/docs/concepts/storage/volumes/#emptydir)
    assert limit >= kv + parse_quantity(shm["emptyDir"]["sizeLimit"]) + 2 * GIB  # + weights and vLLM's own


# ------------------------------------------------------------ vllm bench serve inside the cluster

JOB_FILE = "examples/stack/vllm-bench-job.yaml"


def bench_job():
    objs = manifests.load(JOB_FILE)
    return objs, next(o for o in objs if o["kind"] == "Job")


def test_the_bench_job_validates_and_is_bounded():
    # batch/v1 Job: backoffLimit, activeDeadlineSeconds, ttlSecondsAfterFinished
    # (kubernetes.io/docs/concepts/workloads/controllers/job/).
    objs, job = bench_job()
    assert manifests.validate(objs) == []
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and 0 < spec["activeDeadlineSeconds"] <= 3600
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["template"]["spec"]["restartPolicy"] == "Never"
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    prompts = [int(n) for n in re.findall(r"--num-prompts (\d+)", script)]
    levels = re.search(r"for c in ([\d ]+); do", script).group(1).split()
    assert prompts and len(levels) * max(prompts) <= 256              # a bounded request count in all
    assert "--ignore-eos" in script and "vllm bench serve" in script


def test_the_bench_job_targets_the_service_with_the_key_from_the_secret():
    n = system()
    _, job = bench_job()
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    script = c["args"][0]
    assert f"--base-url http://{n.service}:{n.service_port}" in script
    assert f"--model {n.served_model_name}" in script and f"--tokenizer {n.model_path}" in script
    # vllm bench serve reads the key from OPENAI_API_KEY (vllm/benchmarks/lib/endpoint_request_func.py).
    env = {e["name"]: e for e in c["env"]}
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": n.api_key_secret, "key": "api-key"}
    assert c["image"] == n.image and job["metadata"]["namespace"] == n.namespace
    claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)["persistentVolumeClaim"]
    assert claim == {"claimName": n.pvc, "readOnly": True}


def test_the_bench_job_is_locked_down():
    # Pod Security Standards "restricted" fields (kubernetes.io/docs/concepts/security/pod-security-standards/).
    objs, job = bench_job()
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 10000
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(c["resources"]["limits"])
    policy = next(o for o in objs if o["kind"] == "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert policy["spec"]["ingress"] == [] and set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
