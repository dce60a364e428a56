"""Budgets and a diagnosis for the vLLM Deployment (pure logic, no I/O).

Used by the Deployment chapter (``book/deployment.md``), its lab
(``notebooks/deployment-lab.ipynb``) and the panels in
``llmserve/panels/deployment.py``; the troubleshooting chapter reuses
:func:`diagnose_pod`.

* :func:`probe_budget` — how long the startupProbe lets the Pod start, against
  an estimate of how long vLLM needs to load its weights and start its engine.
* :func:`memory_budget` — the container's memory limit against what is
  charged to it: the vLLM processes, the memory-backed ``/dev/shm`` and the
  page cache of the weight files.
* :func:`diagnose_pod` — a Pod (as the API returns it), its events and the
  last log lines, turned into one plain-words reason and the fix.
* :func:`startup_timings` — the load and engine-start times a vLLM log reports,
  so the estimate above can be replaced by a measurement.

Every function checks its input and raises :class:`~llmserve.core.errors.InputError`
with the fix, so a panel can show the message instead of a traceback.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from llmserve.core.errors import InputError, require

GIB = 1024 ** 3
MB = 1000 ** 2

#: Kubernetes defaults for probe fields left out of a manifest
#: (https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/#configure-probes).
PROBE_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3}

#: An ESTIMATE, not a measurement: seconds vLLM spends starting its engine
#: besides reading the weights (CUDA initialisation, the memory-profiling run,
#: torch.compile and CUDA-graph capture). Replace it with your own number:
#: :func:`startup_timings` reads it from the Pod's log.
DEFAULT_ENGINE_OVERHEAD_S = 120.0

#: An ESTIMATE of the host memory (RSS) of vLLM's processes on a GPU node
#: (API server + engine core, with Python, PyTorch and the CUDA libraries
#: loaded). Replace it with what ``kubectl top pod`` shows on your node.
DEFAULT_PROCESS_GIB = 6.0


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _number(value, name: str, *, minimum: float = 0.0, strict: bool = False, integer: bool = False) -> float:
    """``value`` as a float, or an InputError naming ``name`` and the fix."""
    if isinstance(value, bool) or value is None:
        raise InputError(f"{name} must be a number, not {value!r}.", f"Type a number for {name}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, not {value!r}.", f"Type a number for {name}.") from None
    require(math.isfinite(number), f"{name} must be a finite number, not {value!r}.", f"Type a finite number for {name}.")
    if strict:
        require(number > minimum, f"{name} must be greater than {minimum:g} (got {number:g}).",
                f"Set {name} to a positive value.")
    else:
        require(number >= minimum, f"{name} must be at least {minimum:g} (got {number:g}).",
                f"Set {name} to {minimum:g} or more.")
    if integer:
        require(number == int(number), f"{name} must be a whole number (got {number:g}).",
                f"Kubernetes takes whole seconds and counts for {name}: round it.")
    return number


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")
_FACTOR = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 1024, "Mi": 1024 ** 2, "Gi": GIB, "Ti": 1024 ** 4, "Pi": 1024 ** 5, "Ei": 1024 ** 6}


def parse_quantity(text) -> float:
    """A Kubernetes quantity (``"16Gi"``, ``"500M"``, ``"4"``) in plain units (bytes for memory).

    https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise InputError(f"{text!r} is not a Kubernetes quantity.",
                         "Write it like 16Gi, 512Mi or 4 (binary suffixes Ki, Mi, Gi; decimal k, M, G).")
    return float(match.group(1)) * _FACTOR[match.group(2)]


def vllm_container(deployment: dict, name: str = "vllm") -> dict:
    """The container called ``name`` in a Deployment (or Pod) dict."""
    require(isinstance(deployment, dict), "Expected a Deployment as a dict.", "Load it with llmserve.world.manifests.load_one().")
    spec = deployment.get("spec") or {}
    pod_spec = (spec.get("template") or {}).get("spec") or spec
    containers = pod_spec.get("containers") or []
    for c in containers:
        if c.get("name") == name:
            return c
    raise InputError(f"No container named {name!r} in {deployment.get('kind', 'object')} "
                     f"{(deployment.get('metadata') or {}).get('name', '?')}.",
                     f"Name the vLLM container {name!r}, or pass its name.")


def arg_value(container: dict, flag: str) -> str | None:
    """The value of ``--flag=value`` or ``--flag value`` in a container's args (None if absent)."""
    args = list(container.get("args") or []) + list(container.get("command") or [])
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
        if a == flag and i + 1 < len(args):
            return args[i + 1]
    return None


# --------------------------------------------------------------------------
# (a) probe budget
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    """The four timing fields of a Kubernetes probe (defaults filled in)."""

    initial_delay_s: float = 0
    period_s: float = 10
    timeout_s: float = 1
    failure_threshold: int = 3

    @classmethod
    def from_dict(cls, probe: dict | None) -> "Probe":
        require(isinstance(probe, dict), "The container has no such probe.",
                "Add a startupProbe to the vLLM container (see manifests/base/vllm-deployment.yaml).")
        merged = {**PROBE_DEFAULTS, **{k: v for k, v in probe.items() if k in PROBE_DEFAULTS}}
        return cls(merged["initialDelaySeconds"], merged["periodSeconds"], merged["timeoutSeconds"],
                   int(merged["failureThreshold"]))

    @classmethod
    def of(cls, deployment: dict, kind: str = "startupProbe", container: str = "vllm") -> "Probe":
        return cls.from_dict(vllm_container(deployment, container).get(kind))


@dataclass(frozen=True)
class ProbeBudget:
    window_s: float          # how long the startupProbe lets the container start
    load_s: float            # reading the weights
    overhead_s: float        # engine start besides reading
    needed_s: float          # load_s + overhead_s
    fits: bool
    suggested_failure_threshold: int
    verdict: str

    def __str__(self) -> str:
        return self.verdict


def startup_window_s(probe: Probe) -> float:
    """Seconds before the kubelet gives up on a starting container.

    The probe first runs ``initialDelaySeconds`` after the container starts,
    then every ``periodSeconds``; ``failureThreshold`` failures in a row and
    the container is killed. The Kubernetes docs' own example: 30 × 10 s gives
    "a maximum of 5 minutes (30 * 10 = 300s) to finish its startup".
    """
    return probe.initial_delay_s + probe.failure_threshold * probe.period_s


def load_time_s(weights_gib: float, disk_mb_s: float) -> float:
    """Seconds to read ``weights_gib`` GiB at ``disk_mb_s`` MB/s (decimal MB, as disks are rated)."""
    return weights_gib * GIB / (disk_mb_s * MB)


def probe_budget(initial_delay_s=0, period_s=10, failure_threshold=3, timeout_s=1, *,
                 weights_gib, disk_mb_s, overhead_s=DEFAULT_ENGINE_OVERHEAD_S,
                 safety_factor=1.5) -> ProbeBudget:
    """Does the startupProbe give vLLM enough time to load and start?

    ``needed = weights / disk speed + overhead`` is an ESTIMATE (the overhead
    especially: measure yours with :func:`startup_timings`). The suggested
    ``failureThreshold`` covers ``safety_factor × needed``.
    """
    initial = _number(initial_delay_s, "initialDelaySeconds", integer=True)
    period = _number(period_s, "periodSeconds", minimum=0, strict=True, integer=True)
    threshold = _number(failure_threshold, "failureThreshold", minimum=0, strict=True, integer=True)
    timeout = _number(timeout_s, "timeoutSeconds", minimum=0, strict=True, integer=True)
    weights = _number(weights_gib, "weight size (GiB)", minimum=0, strict=True)
    disk = _number(disk_mb_s, "disk read speed (MB/s)", minimum=0, strict=True)
    overhead = _number(overhead_s, "engine start overhead (s)")
    factor = _number(safety_factor, "safety factor", minimum=1.0)
    require(timeout <= period, f"timeoutSeconds ({timeout:g}) is longer than periodSeconds ({period:g}).",
            "Keep timeoutSeconds at or below periodSeconds, or probes overlap.")

    probe = Probe(initial, period, timeout, int(threshold))
    window = startup_window_s(probe)
    load = load_time_s(weights, disk)
    needed = load + overhead
    fits = window >= needed
    suggested = max(1, math.ceil((factor * needed - initial) / period))
    head = (f"The startupProbe allows {initial:g} s + {int(threshold)} × {period:g} s = {window:.0f} s; "
            f"vLLM needs about {needed:.0f} s ({weights:g} GiB at {disk:g} MB/s = {load:.0f} s of reading "
            f"+ {overhead:.0f} s estimated engine start).")
    if fits:
        verdict = (f"OK: {head} Margin {window - needed:.0f} s. "
                   f"For {factor:g}× headroom, failureThreshold {suggested} is enough.")
    else:
        verdict = (f"TOO SHORT: {head} The kubelet would kill the container after {window:.0f} s, "
                   f"restart it and fail again, in a loop (CrashLoopBackOff). "
                   f"Raise failureThreshold to {suggested} ({factor:g}× the estimate).")
    return ProbeBudget(window, load, overhead, needed, fits, suggested, verdict)


_LOG_TIMES = {
    "weights_s": re.compile(r"Loading weights took ([0-9.]+) s"),
    "model_load_s": re.compile(r"Model loading took [0-9.]+ GiB(?: memory)? and ([0-9.]+) s"),
    "graph_capture_s": re.compile(r"Graph capturing finished in ([0-9.]+) sec"),
    "engine_init_s": re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([0-9.]+) s"),
}


def startup_timings(log_text: str) -> dict[str, float]:
    """The start-up times vLLM logs, in seconds (keys present only when found).

    vLLM 0.32 logs ``Loading weights took N seconds``, ``Model loading took X GiB
    memory and N seconds`` (vllm/v1/worker/gpu_model_runner.py), ``Graph
    capturing finished in N secs`` and ``init engine (profile, create kv cache,
    warmup model) took N s`` (vllm/v1/engine/core.py). The engine overhead for
    :func:`probe_budget` is ``model_load_s - weights_s + engine_init_s``.
    """
    require(isinstance(log_text, str), "The log must be text.", "Pass the Pod's log as a string.")
    found = {}
    for key, pattern in _LOG_TIMES.items():
        matches = pattern.findall(log_text)
        if matches:
            found[key] = float(matches[-1])
    if "model_load_s" in found and "engine_init_s" in found:
        found["overhead_s"] = found["model_load_s"] - found.get("weights_s", 0.0) + found["engine_init_s"]
    return found


# --------------------------------------------------------------------------
# (b) memory budget
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryBudget:
    limit_gib: float
    process_gib: float
    shm_gib: float
    page_cache_gib: float
    pinned_gib: float        # what the kernel cannot take back: processes + /dev/shm
    headroom_gib: float      # limit - pinned
    oom: bool
    verdict: str

    def __str__(self) -> str:
        return self.verdict


def memory_budget(limit_gib, process_gib=DEFAULT_PROCESS_GIB, shm_used_gib=0.0, shm_size_limit_gib=4.0,
                  weights_gib=0.0) -> MemoryBudget:
    """Would the container be OOM-killed?

    Charged to the container's memory cgroup: the processes' own memory
    (``process_gib``, an estimate you set), the files written to the
    memory-backed ``/dev/shm`` (up to its ``sizeLimit``; they count against the
    limit, Kubernetes docs, emptyDir), and the page cache of the weight files
    read at start-up. The page cache is reclaimable: the kernel drops it
    before it OOM-kills, so only processes + /dev/shm must fit.
    """
    limit = _number(limit_gib, "memory limit (GiB)", minimum=0, strict=True)
    process = _number(process_gib, "process memory (GiB)")
    shm_used = _number(shm_used_gib, "/dev/shm in use (GiB)")
    shm_cap = _number(shm_size_limit_gib, "/dev/shm sizeLimit (GiB)")
    weights = _number(weights_gib, "weight files (GiB)")

    notes = []
    if shm_used > shm_cap:
        notes.append(f"/dev/shm cannot hold {shm_used:g} GiB: its sizeLimit is {shm_cap:g} GiB. Where the "
                     f"tmpfs is mounted at that size, writes beyond it fail (No space left on device); "
                     f"otherwise the kubelet evicts a Pod whose emptyDir outgrows its sizeLimit.")
    if process + shm_cap > limit:
        notes.append(f"Filled to its sizeLimit, /dev/shm ({shm_cap:g} GiB) plus the processes would need "
                     f"{process + shm_cap:g} GiB, above the {limit:g} GiB limit: the container would be "
                     f"OOM-killed before the sizeLimit is reached.")
    shm = min(shm_used, shm_cap)
    pinned = process + shm
    headroom = limit - pinned
    oom = pinned > limit
    used = f"processes {process:g} GiB + /dev/shm {shm:g} GiB = {pinned:g} GiB"
    if oom:
        verdict = (f"OOM-KILLED: {used} exceeds the {limit:g} GiB limit. The kernel kills the container "
                   f"(reason OOMKilled, exit code 137). Raise limits.memory to at least "
                   f"{math.ceil(pinned * 1.25)}Gi, or lower what /dev/shm and the processes use.")
    else:
        verdict = f"FITS: {used}, within the {limit:g} GiB limit with {headroom:g} GiB to spare."
        if weights > headroom:
            verdict += (f" The {weights:g} GiB of weights read at start-up fill the page cache beyond that: the "
                        f"kernel reclaims the excess (no OOM, but a restart reads more from disk again).")
        elif weights > 0:
            verdict += f" The page cache of the {weights:g} GiB of weight files fits beside them."
        if headroom < 1.0:
            verdict += " Under 1 GiB to spare: a larger batch or tokenizer spike could OOM-kill it."
    if notes:
        verdict += " " + " ".join(notes)
    return MemoryBudget(limit, process, shm, weights, pinned, headroom, oom, verdict)


def budgets_from_deployment(deployment: dict) -> dict:
    """The values the two calculators start from, read from the Deployment manifest."""
    c = vllm_container(deployment)
    probe = Probe.of(deployment)
    limits = (c.get("resources") or {}).get("limits") or {}
    require("memory" in limits, "The vLLM container has no memory limit.",
            "Set resources.limits.memory (see manifests/base/vllm-deployment.yaml).")
    pod_spec = deployment["spec"]["template"]["spec"]
    shm = next((v for v in pod_spec.get("volumes") or [] if (v.get("emptyDir") or {}).get("medium") == "Memory"), None)
    shm_limit = parse_quantity((shm or {}).get("emptyDir", {}).get("sizeLimit", "0")) / GIB if shm else 0.0
    return {
        "initial_delay_s": probe.initial_delay_s, "period_s": probe.period_s,
        "failure_threshold": probe.failure_threshold, "timeout_s": probe.timeout_s,
        "limit_gib": parse_quantity(limits["memory"]) / GIB, "shm_size_limit_gib": shm_limit,
        "model": arg_value(c, "--model"), "max_model_len": arg_value(c, "--max-model-len"),
    }


# --------------------------------------------------------------------------
# (c) rollout diagnosis
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Diagnosis:
    state: str               # "ready", "waiting" (normal progress), "stuck" or "failing"
    reason: str
    fix: str
    evidence: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def __str__(self) -> str:
        text = f"[{self.state.upper()}] {self.reason}"
        if self.fix:
            text += f"\nFix: {self.fix}"
        if self.evidence:
            text += "\nEvidence:\n" + "\n".join(f"  {e}" for e in self.evidence)
        return text


def _conditions(pod: dict) -> dict:
    return {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}


def _events_text(events: list[dict]) -> list[str]:
    return [f"{e.get('reason', '')}: {e.get('message', '')}".strip() for e in events]


def diagnose_pod(pod: dict | None, events: list[dict] | None = None, log_tail: str = "",
                 container: str = "vllm", startup_window: float | None = None) -> Diagnosis:
    """Why is this Pod not serving yet, in plain words, with the fix.

    ``pod`` is the Pod as the API returns it (``kubectl get pod -o json``
    shape: ``status.conditions``, ``status.containerStatuses[].state`` and
    ``.lastState``), ``events`` the Pod's events (``reason``, ``message``),
    ``log_tail`` the last lines of the container's log (or of its previous run).
    """
    events = list(events or [])
    require(isinstance(events, list) and all(isinstance(e, dict) for e in events),
            "events must be a list of Event dicts.", "Pass Cluster.events(ref) or [].")
    require(isinstance(log_tail, str), "log_tail must be text.", "Pass the log as a string, or ''.")
    if pod is None:
        return Diagnosis("waiting", "There is no Pod yet: the Deployment has not created one (or it was just deleted).",
                         "Wait a few seconds. If none appears, `kubectl describe replicaset -n ai-platform` shows "
                         "why the ReplicaSet cannot create it (quota, admission, Pod Security).")
    require(isinstance(pod, dict) and isinstance(pod.get("status", {}), dict),
            "The Pod must be a dict shaped like the API object.", "Pass Cluster.get(ref) or a Pod loaded from JSON.")
    status = pod.get("status") or {}
    conds = _conditions(pod)
    ev_text = _events_text(events)
    logs = [line for line in log_tail.strip().splitlines() if line.strip()][-5:]
    statuses = [s for s in status.get("containerStatuses") or [] if s.get("name") == container] or \
        list(status.get("containerStatuses") or [])
    cs = statuses[0] if statuses else {}
    state = cs.get("state") or {}
    last = (cs.get("lastState") or {}).get("terminated") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    restarts = cs.get("restartCount", 0)

    def evidence(*extra):
        return [e for e in extra if e] + ev_text[-4:]

    # -- ready (earlier trouble is history, but say so) -----------------------
    if conds.get("Ready", {}).get("status") == "True":
        history = f"; its last run ended with {last.get('reason')}" if last.get("reason") else ""
        return Diagnosis("ready", f"The Pod is Ready: /health answers and the Service sends it traffic "
                         f"(restarts: {restarts}{history}).", "", [])

    # -- killed for memory (now or on the last run) -------------------------
    if terminated.get("reason") == "OOMKilled" or last.get("reason") == "OOMKilled":
        return Diagnosis("failing", f"The container was OOM-killed (exit code {(terminated or last).get('exitCode', 137)}): "
                         f"the processes plus /dev/shm outgrew limits.memory. Restarts so far: {restarts}.",
                         "Raise resources.limits.memory (and requests) or shrink /dev/shm's sizeLimit; "
                         "check the numbers with the memory-budget calculator.",
                         evidence("lastState.terminated.reason: OOMKilled"))

    # -- the image ----------------------------------------------------------
    if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
        return Diagnosis("stuck", f"The node cannot pull the image ({waiting.get('reason')}): {waiting.get('message', '')}".strip(),
                         "Check the image name and tag (`crictl pull` it on the node), the node's access to the "
                         "registry, and an imagePullSecret for a private registry. Offline nodes need the image "
                         "loaded beforehand (`ctr -n k8s.io images import`).",
                         evidence(f"state.waiting.reason: {waiting.get('reason')}"))

    # -- a Secret or ConfigMap the container needs is missing ----------------
    if waiting.get("reason") == "CreateContainerConfigError":
        msg = waiting.get("message", "")
        fix = ("Create the Secret vllm-api-key with key api-key in ai-platform (the stack chapter does this)."
               if "secret" in msg else "Create the object the message names, or fix the reference in the Deployment.")
        return Diagnosis("stuck", f"The container cannot be created: {msg}", fix,
                         evidence("state.waiting.reason: CreateContainerConfigError"))

    # -- killed by its own probes -------------------------------------------
    startup_kills = [t for t in ev_text if "failed startup probe" in t]
    liveness_kills = [t for t in ev_text if "failed liveness probe" in t]
    if startup_kills:
        window = f" after {startup_window:.0f} s" if startup_window else ""
        return Diagnosis("failing", f"The startup probe gave up{window} and the kubelet restarted the container "
                         f"(restarts: {restarts}): vLLM had not finished loading, so /health never answered in time.",
                         "Raise startupProbe.failureThreshold (size it with the probe-budget calculator); if the log "
                         "shows an error instead of loading progress, fix that first.",
                         evidence(*(f"log: {line}" for line in logs)))
    if liveness_kills:
        return Diagnosis("failing", f"The liveness probe failed and the kubelet restarted the container (restarts: {restarts}).",
                         "If this happens during start-up, add or lengthen the startupProbe; otherwise the engine "
                         "died: read the log lines below.",
                         evidence(*(f"log: {line}" for line in logs)))

    # -- crashing on its own -------------------------------------------------
    if waiting.get("reason") == "CrashLoopBackOff" or (terminated and terminated.get("exitCode", 0) != 0):
        code = last.get("exitCode", terminated.get("exitCode"))
        return Diagnosis("failing", f"vLLM exits on its own (exit code {code}, restarts: {restarts}); Kubernetes "
                         f"waits longer before each retry (CrashLoopBackOff).",
                         "Read the last log lines (`kubectl logs --previous`): a wrong --model path, an unknown "
                         "argument, or a --max-model-len whose KV cache does not fit are the usual causes.",
                         evidence(*(f"log: {line}" for line in logs) if logs else ["(no log lines captured)"]))

    # -- not scheduled --------------------------------------------------------
    scheduled = conds.get("PodScheduled", {})
    if status.get("phase") == "Pending" and scheduled.get("status") == "False":
        msg = scheduled.get("message", "") or " ".join(t for t in ev_text if t.startswith("FailedScheduling"))
        if "nvidia.com/gpu" in msg:
            return Diagnosis("stuck", f"No node has a free GPU: {msg}",
                             "Another Pod holds the GPU (an old vLLM Pod under RollingUpdate: use strategy Recreate), "
                             "or the NVIDIA device plugin is not running (`kubectl describe node | grep nvidia.com/gpu` "
                             "should show Allocatable 1).", evidence())
        if "PersistentVolumeClaim" in msg or "persistentvolumeclaim" in msg:
            return Diagnosis("stuck", f"The model volume's claim is not bound, so the Pod cannot be placed: {msg}",
                             "Apply the PV and PVC from the storage chapter and check `kubectl get pvc -n ai-platform` "
                             "says Bound (storageClassName \"\" on both).", evidence())
        if "taint" in msg:
            return Diagnosis("stuck", f"Every node carries a taint the Pod does not tolerate: {msg}",
                             "Add a toleration for the GPU node's taint (e.g. nvidia.com/gpu) or remove the taint.", evidence())
        return Diagnosis("stuck", f"The scheduler cannot place the Pod: {msg or 'no message yet'}",
                         "Read the FailedScheduling event: it names the resource or rule that is missing.", evidence())

    # -- on its way ------------------------------------------------------------
    if waiting.get("reason") == "ContainerCreating" or status.get("phase") == "Pending":
        pulling = [t for t in ev_text if t.startswith("Pulling")]
        what = "pulling the image (many GB, minutes the first time)" if pulling and not any(
            t.startswith("Pulled") for t in ev_text) else "creating the container and mounting its volumes"
        return Diagnosis("waiting", f"The node is {what}.", "Wait; `kubectl get events -n ai-platform -w` shows progress.",
                         evidence())
    if state.get("running"):
        probe_fails = [t for t in ev_text if "Startup probe failed" in t]
        if probe_fails or conds.get("ContainersReady", {}).get("status") != "True":
            within = f" (the startup probe allows {startup_window:.0f} s)" if startup_window else ""
            return Diagnosis("waiting", f"vLLM is running and loading the weights; /health does not answer yet, so the "
                             f"startup probe fails — that is normal until loading ends{within}.",
                             "Wait, and watch the log: `kubectl logs -f deploy/vllm-qwen25-coder-7b -n ai-platform`.",
                             evidence(*(f"log: {line}" for line in logs)))
        readiness = [t for t in ev_text if "Readiness probe failed" in t]
        return Diagnosis("failing" if readiness else "waiting",
                         "The container runs but the readiness probe fails: the Service sends it no traffic.",
                         "Check /health from inside the cluster and the engine's log.", evidence())
    return Diagnosis("waiting", f"The Pod is {status.get('phase', 'in an unknown phase')}.", "Wait, then look again.", evidence())


# --------------------------------------------------------------------------
# reading and changing the manifest (for the lab)
# --------------------------------------------------------------------------
def with_arg(deployment: dict, flag: str, value, container: str = "vllm") -> dict:
    """A deep copy of the Deployment with ``--flag=value`` set (replaced or appended)."""
    import copy
    require(isinstance(flag, str) and flag.startswith("--"), f"{flag!r} is not a vLLM option.",
            "Write the option with its dashes, e.g. --max-model-len.")
    new = copy.deepcopy(deployment)
    c = vllm_container(new, container)
    args = list(c.get("args") or [])
    setting = f"{flag}={value}"
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            args[i] = setting
            break
        if a == flag and i + 1 < len(args):
            args[i:i + 2] = [setting]
            break
    else:
        args.append(setting)
    c["args"] = args
    return new


def essentials(deployment: dict) -> list[tuple[str, str]]:
    """The fields of the Pod spec that decide whether vLLM runs, as (field, value) rows."""
    spec = deployment.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    c = vllm_container(deployment)
    res = c.get("resources") or {}
    mounts = {m["name"]: m for m in c.get("volumeMounts") or []}
    rows = [("strategy", (spec.get("strategy") or {}).get("type", "RollingUpdate (default)")),
            ("replicas", str(spec.get("replicas", 1))),
            ("image", f"{c.get('image')} (pull: {c.get('imagePullPolicy', 'default')})"),
            ("args", " ".join(c.get("args") or [])),
            ("requests", ", ".join(f"{k}={v}" for k, v in (res.get("requests") or {}).items())),
            ("limits", ", ".join(f"{k}={v}" for k, v in (res.get("limits") or {}).items()))]
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        if kind in c:
            p = Probe.from_dict(c[kind])
            path = ((c[kind].get("httpGet") or {}).get("path")) or "(exec/tcp)"
            extra = f", gives up after {startup_window_s(p):.0f} s" if kind == "startupProbe" else ""
            rows.append((kind, f"GET {path} every {p.period_s:g} s, timeout {p.timeout_s:g} s, "
                               f"{p.failure_threshold} failures{extra}"))
        else:
            rows.append((kind, "none"))
    for v in pod.get("volumes") or []:
        m = mounts.get(v["name"], {})
        source = next((k for k in v if k != "name"), "?")
        detail = v[source] if isinstance(v[source], dict) else {}
        rows.append((f"volume {v['name']}", f"{source} {detail} at {m.get('mountPath', '(not mounted)')}"
                                            f"{' read-only' if m.get('readOnly') else ''}"))
    env = [e["name"] + ("=" + e["value"] if "value" in e else " (from a Secret)") for e in c.get("env") or []]
    rows.append(("env", ", ".join(env)))
    sc = {**(pod.get("securityContext") or {}), **(c.get("securityContext") or {})}
    rows.append(("securityContext", ", ".join(f"{k}={v}" for k, v in sc.items())))
    return rows
