"""Pure rules of the Deployment chapter: the time and memory budgets of the vLLM Pod.

Used by ``book/deployment.md``, ``notebooks/deployment-lab.ipynb`` and the calculators in
:mod:`llmserve.deployment.panel`. Layer: pure rules (core only, no I/O).

* :func:`probe_budget` — how long the startupProbe lets the Pod start, against an
  estimate of how long vLLM needs to load its weights and start its engine;
* :func:`memory_budget` — the container's memory limit against what is charged to it:
  the vLLM processes, the memory-backed ``/dev/shm`` and the page cache of the weights;
* :func:`shutdown_budget` — the termination grace period against the preStop pause and
  vLLM's ``--shutdown-timeout`` (the time it may spend finishing in-flight requests);
* :func:`startup_timings` — the load and engine-start times a vLLM log reports, so the
  estimate above can be replaced by a measurement;
* :func:`budgets_from_deployment` — the values all three start from, read from the manifest.

Every function checks its input and raises :class:`~llmserve.core.errors.InputError` with
the fix, so a panel can show the message instead of a traceback.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from llmserve.core.errors import InputError, require
from llmserve.core.objects import arg_value, vllm_container
from llmserve.core.quantity import GIB, quantity_float

MB = 1000 ** 2

#: Kubernetes defaults for probe fields left out of a manifest
#: (https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/#configure-probes).
PROBE_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3}

#: ``terminationGracePeriodSeconds`` when a Pod spec leaves it out (PodSpec API reference: "Defaults to 30 seconds").
DEFAULT_GRACE_S = 30

#: An ESTIMATE, not a measurement: seconds vLLM spends starting its engine besides reading
#: the weights (CUDA initialisation, the memory-profiling run, torch.compile and CUDA-graph
#: capture). Replace it with your own number: :func:`startup_timings` reads it from the log.
DEFAULT_ENGINE_OVERHEAD_S = 120.0

#: An ESTIMATE of the host memory (RSS) of vLLM's processes on a GPU node (API server +
#: engine core, with Python, PyTorch and the CUDA libraries loaded). Replace it with what
#: ``kubectl top pod`` shows on your node.
DEFAULT_PROCESS_GIB = 6.0

#: The AWQ build's weight files, in GiB: ≈5.57 GB. Computed from the model's
#: ``config.json`` (hidden size 3584, intermediate size 18944, 28 layers, 512-wide K/V,
#: vocabulary 152,064): the linear layers in 4 bits with an fp16 scale and a 4-bit zero
#: per group of 128, the embeddings and the output layer in fp16
#: (tests/deployment/test_budgets.py redoes the sum). It is what the Pod reads from disk at
#: start-up and what fills the page cache; measure yours with ``du -sb`` on the model folder.
AWQ_WEIGHT_FILES_GIB = 5.2

#: An ESTIMATE of the seconds vLLM needs after its drain to stop the engine process and
#: release the GPU before the kubelet's SIGKILL (vllm/v1/utils.py ``shutdown``: terminate,
#: join, then kill what is left).
DEFAULT_TEARDOWN_S = 5.0


# -- input checking ----------------------------------------------------------------------
def _number(value, name: str, *, minimum: float = 0.0, strict: bool = False, integer: bool = False) -> float:
    """``value`` as a float, or an InputError naming ``name`` and the fix."""
    if isinstance(value, bool) or value is None:
        raise InputError(f"{name} must be a number, not {value!r}.", f"Type a number for {name}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, not {value!r}.", f"Type a number for {name}.") from None
    require(math.isfinite(number), f"{name} must be a finite number, not {value!r}.",
            f"Type a finite number for {name}.")
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


# -- (a) the probe budget ------------------------------------------------------------------
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

    The probe first runs ``initialDelaySeconds`` after the container starts, then every
    ``periodSeconds``; ``failureThreshold`` failures in a row and the container is killed.
    The Kubernetes docs' own example: 30 × 10 s gives "a maximum of 5 minutes (30 * 10 = 300s)".
    """
    return probe.initial_delay_s + probe.failure_threshold * probe.period_s


def load_time_s(weights_gib: float, disk_mb_s: float) -> float:
    """Seconds to read ``weights_gib`` GiB at ``disk_mb_s`` MB/s (decimal MB, as disks are rated)."""
    return weights_gib * GIB / (disk_mb_s * MB)


def probe_budget(initial_delay_s=0, period_s=10, failure_threshold=3, timeout_s=1, *,
                 weights_gib, disk_mb_s, overhead_s=DEFAULT_ENGINE_OVERHEAD_S,
                 safety_factor=1.5) -> ProbeBudget:
    """Does the startupProbe give vLLM enough time to load and start?

    ``needed = weights / disk speed + overhead`` is an ESTIMATE (the overhead especially:
    measure yours with :func:`startup_timings`). The suggested ``failureThreshold`` covers
    ``safety_factor × needed``.
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

    window = startup_window_s(Probe(initial, period, timeout, int(threshold)))
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

    vLLM 0.32 logs ``Loading weights took N seconds``, ``Model loading took X GiB memory and
    N seconds`` (vllm/v1/worker/gpu_model_runner.py), ``Graph capturing finished in N secs``
    and ``init engine (profile, create kv cache, warmup model) took N s``
    (vllm/v1/engine/core.py). The engine overhead for :func:`probe_budget` is
    ``model_load_s - weights_s + engine_init_s``.
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


# -- (b) the memory budget -----------------------------------------------------------------
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

    Charged to the container's memory cgroup: the processes' own memory (``process_gib``,
    an estimate you set), the files written to the memory-backed ``/dev/shm`` (up to its
    ``sizeLimit``; they count against the limit, Kubernetes docs, emptyDir), and the page
    cache of the weight files read at start-up. The page cache is reclaimable: the kernel
    drops it before it OOM-kills, so only processes + /dev/shm must fit.
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


# -- (c) the shutdown budget ---------------------------------------------------------------
@dataclass(frozen=True)
class ShutdownBudget:
    grace_s: float           # terminationGracePeriodSeconds: SIGKILL comes this long after deletion
    pre_stop_s: float        # the preStop pause, before the kubelet sends SIGTERM
    drain_s: float           # vLLM's --shutdown-timeout: 0 aborts in-flight requests
    teardown_s: float        # what vLLM needs after draining to exit (an estimate)
    margin_s: float          # grace - pre_stop - drain - teardown
    drains: bool
    fits: bool
    verdict: str

    def __str__(self) -> str:
        return self.verdict


def shutdown_budget(grace_s=DEFAULT_GRACE_S, pre_stop_s=0, drain_s=0, teardown_s=DEFAULT_TEARDOWN_S
                    ) -> ShutdownBudget:
    """Does vLLM get to finish its in-flight requests before the kubelet kills it?

    The kubelet runs the preStop hook, then sends SIGTERM; the grace period counts from the
    start of the hook, and at its end the container gets SIGKILL (Kubernetes docs, "Pod
    Lifecycle: termination of Pods"). On SIGTERM vLLM 0.32 stops its engine: with
    ``--shutdown-timeout=0`` (the default) it aborts every in-flight request at once, with
    N > 0 it refuses new requests and lets running ones finish for up to N seconds
    (``EngineCore._handle_shutdown`` in vllm/v1/engine/core.py).
    """
    grace = _number(grace_s, "terminationGracePeriodSeconds", integer=True)
    pre_stop = _number(pre_stop_s, "preStop sleep (s)", integer=True)
    drain = _number(drain_s, "--shutdown-timeout (s)", integer=True)
    teardown = _number(teardown_s, "teardown estimate (s)")
    margin = grace - pre_stop - drain - teardown
    fits = margin >= 0
    head = (f"grace {grace:g} s = preStop {pre_stop:g} s + drain up to {drain:g} s + about {teardown:g} s "
            f"to exit, {margin:+g} s to spare")
    if drain == 0:
        verdict = (f"ABORTS: --shutdown-timeout is 0 (vLLM's default), so on SIGTERM vLLM aborts every "
                   f"in-flight request at once and clients get cut-off answers ({head}). Set "
                   f"--shutdown-timeout to the longest answer you want to let finish, below the grace period.")
    elif not fits:
        verdict = (f"CUT SHORT: {head}. A drain that uses its whole timeout is still running when the "
                   f"kubelet sends SIGKILL. Raise terminationGracePeriodSeconds to at least "
                   f"{math.ceil(pre_stop + drain + teardown)} or lower --shutdown-timeout.")
    else:
        verdict = (f"DRAINS: {head}. On SIGTERM vLLM refuses new requests and finishes the running ones "
                   f"for up to {drain:g} s; answers longer than that are aborted.")
    return ShutdownBudget(grace, pre_stop, drain, teardown, margin, drain > 0, fits, verdict)


def shutdown_from_deployment(deployment: dict) -> dict:
    """``grace_s``, ``pre_stop_s`` and ``drain_s`` as the manifest sets them (else Kubernetes' and vLLM's defaults)."""
    c = vllm_container(deployment)
    hook = ((c.get("lifecycle") or {}).get("preStop")) or {}
    pod_spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return {"grace_s": pod_spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_S),
            "pre_stop_s": (hook.get("sleep") or {}).get("seconds", 0),
            "drain_s": int(arg_value(c, "--shutdown-timeout") or 0)}


# -- reading the manifest -----------------------------------------------------------------
def budgets_from_deployment(deployment: dict) -> dict:
    """The values the three calculators start from, read from the Deployment manifest."""
    c = vllm_container(deployment)
    probe = Probe.of(deployment)
    limits = (c.get("resources") or {}).get("limits") or {}
    require("memory" in limits, "The vLLM container has no memory limit.",
            "Set resources.limits.memory (see manifests/base/vllm-deployment.yaml).")
    pod_spec = deployment["spec"]["template"]["spec"]
    shm = next((v for v in pod_spec.get("volumes") or [] if (v.get("emptyDir") or {}).get("medium") == "Memory"),
               None)
    shm_limit = quantity_float(shm["emptyDir"].get("sizeLimit", "0"), "/dev/shm sizeLimit") / GIB if shm else 0.0
    return {
        "initial_delay_s": probe.initial_delay_s, "period_s": probe.period_s,
        "failure_threshold": probe.failure_threshold, "timeout_s": probe.timeout_s,
        "limit_gib": quantity_float(limits["memory"], "memory limit") / GIB, "shm_size_limit_gib": shm_limit,
        **shutdown_from_deployment(deployment),
        "model": arg_value(c, "--model"), "max_model_len": arg_value(c, "--max-model-len"),
    }
