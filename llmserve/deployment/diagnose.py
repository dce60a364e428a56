"""Pure rules of the Deployment chapter: why a vLLM Pod is not serving yet, in plain words, with the fix.

Used by ``book/deployment.md`` (the diagnosis table), :mod:`llmserve.deployment.live`
(which reads the Pod, its events and its log from the cluster) and the stack and
troubleshooting chapters. Layer: pure rules (core only, no I/O).

A :class:`Diagnosis` is not a :class:`~llmserve.core.findings.Finding`: a finding is the
verdict of one check on a manifest (ok, warning, error), a diagnosis is where a *rollout*
stands right now: ``ready``, ``waiting`` (normal progress), ``stuck`` (needs a change
before it can go on) or ``failing`` (restarting), with the evidence it read. The wait
loop gives up on the last two and keeps waiting on the second.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from llmserve.core.errors import require
from llmserve.core.names import system

READY, WAITING, STUCK, FAILING = "ready", "waiting", "stuck", "failing"


@dataclass(frozen=True)
class Diagnosis:
    state: str               # READY, WAITING, STUCK or FAILING
    reason: str
    fix: str
    evidence: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.state == READY

    @property
    def hopeless(self) -> bool:
        """Stuck or failing: waiting longer will not help without a change."""
        return self.state in (STUCK, FAILING)

    def __str__(self) -> str:
        text = f"[{self.state.upper()}] {self.reason}"
        if self.fix:
            text += f"\nFix: {self.fix}"
        if self.evidence:
            text += "\nEvidence:\n" + "\n".join(f"  {e}" for e in self.evidence)
        return text


@dataclass(frozen=True)
class _Pod:
    """What the rules read from one Pod, its events and its log, extracted once."""

    phase: str | None
    conditions: dict
    state: dict
    waiting: dict
    terminated: dict
    last: dict
    restarts: int
    events: list[str]
    logs: list[str]
    startup_window: float | None

    def evidence(self, *extra: str) -> list[str]:
        return [e for e in extra if e] + self.events[-4:]

    def log_evidence(self) -> list[str]:
        return self.evidence(*(f"log: {line}" for line in self.logs))


def _read(pod: dict, events: list[dict], log_tail: str, container: str, window: float | None) -> _Pod:
    status = pod.get("status") or {}
    all_statuses = list(status.get("containerStatuses") or [])
    statuses = [s for s in all_statuses if s.get("name") == container] or all_statuses
    cs = statuses[0] if statuses else {}
    state = cs.get("state") or {}
    return _Pod(
        phase=status.get("phase"),
        conditions={c.get("type"): c for c in status.get("conditions") or []},
        state=state,
        waiting=state.get("waiting") or {},
        terminated=state.get("terminated") or {},
        last=(cs.get("lastState") or {}).get("terminated") or {},
        restarts=cs.get("restartCount", 0),
        events=[f"{e.get('reason', '')}: {e.get('message', '')}".strip() for e in events],
        logs=[line for line in log_tail.strip().splitlines() if line.strip()][-5:],
        startup_window=window,
    )


# -- one rule per cause, tried in order; each returns a Diagnosis or None ----------------------
def _ready(p: _Pod) -> Diagnosis | None:
    if p.conditions.get("Ready", {}).get("status") != "True":
        return None
    history = f"; its last run ended with {p.last.get('reason')}" if p.last.get("reason") else ""
    return Diagnosis(READY, f"The Pod is Ready: /health answers and the Service sends it traffic "
                     f"(restarts: {p.restarts}{history}).", "", [])


def _oom_killed(p: _Pod) -> Diagnosis | None:
    if "OOMKilled" not in (p.terminated.get("reason"), p.last.get("reason")):
        return None
    code = (p.terminated or p.last).get("exitCode", 137)
    return Diagnosis(FAILING, f"The container was OOM-killed (exit code {code}): the processes plus /dev/shm "
                     f"outgrew limits.memory. Restarts so far: {p.restarts}.",
                     "Raise resources.limits.memory (and requests) or shrink /dev/shm's sizeLimit; "
                     "check the numbers with the memory-budget calculator.",
                     p.evidence("lastState.terminated.reason: OOMKilled"))


def _image(p: _Pod) -> Diagnosis | None:
    reason = p.waiting.get("reason")
    if reason not in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
        return None
    return Diagnosis(STUCK, f"The node cannot pull the image ({reason}): {p.waiting.get('message', '')}".strip(),
                     "Check the image name and tag (`crictl pull` it on the node), the node's access to the "
                     "registry, and an imagePullSecret for a private registry. Offline nodes need the image "
                     "loaded beforehand (`ctr -n k8s.io images import`).",
                     p.evidence(f"state.waiting.reason: {reason}"))


def _missing_config(p: _Pod) -> Diagnosis | None:
    if p.waiting.get("reason") != "CreateContainerConfigError":
        return None
    msg = p.waiting.get("message", "")
    n = system()
    if "secret" in msg:
        fix = (f"Create the Secret {n.api_key_secret} with the key api-key in {n.namespace} from a generated "
               f"key: `kubectl create secret generic {n.api_key_secret} -n {n.namespace} "
               f"--from-literal=api-key=\"$(openssl rand -hex 16)\"` (the stack chapter's helper does the same).")
    else:
        fix = "Create the object the message names, or fix the reference in the Deployment."
    return Diagnosis(STUCK, f"The container cannot be created: {msg}", fix,
                     p.evidence("state.waiting.reason: CreateContainerConfigError"))


def _killed_by_probes(p: _Pod) -> Diagnosis | None:
    if any("failed startup probe" in t for t in p.events):
        window = f" after {p.startup_window:.0f} s" if p.startup_window else ""
        return Diagnosis(FAILING, f"The startup probe gave up{window} and the kubelet restarted the container "
                         f"(restarts: {p.restarts}): vLLM had not finished loading, so /health never answered "
                         "in time.",
                         "Raise startupProbe.failureThreshold (size it with the probe-budget calculator); if the "
                         "log shows an error instead of loading progress, fix that first.", p.log_evidence())
    if any("failed liveness probe" in t for t in p.events):
        return Diagnosis(FAILING, f"The liveness probe failed and the kubelet restarted the container "
                         f"(restarts: {p.restarts}).",
                         "If this happens during start-up, add or lengthen the startupProbe; otherwise the engine "
                         "died: read the log lines below.", p.log_evidence())
    return None


def _crashing(p: _Pod) -> Diagnosis | None:
    if p.waiting.get("reason") != "CrashLoopBackOff" and not (p.terminated and p.terminated.get("exitCode", 0)):
        return None
    code = p.last.get("exitCode", p.terminated.get("exitCode"))
    evidence = p.log_evidence() if p.logs else p.evidence("(no log lines captured)")
    return Diagnosis(FAILING, f"vLLM exits on its own (exit code {code}, restarts: {p.restarts}); Kubernetes "
                     "waits longer before each retry (CrashLoopBackOff).",
                     "Read the last log lines (`kubectl logs --previous`): a wrong --model path, an unknown "
                     "argument, or a --max-model-len whose KV cache does not fit are the usual causes.", evidence)


def _unscheduled(p: _Pod) -> Diagnosis | None:
    scheduled = p.conditions.get("PodScheduled", {})
    if p.phase != "Pending" or scheduled.get("status") != "False":
        return None
    msg = scheduled.get("message", "") or " ".join(t for t in p.events if t.startswith("FailedScheduling"))
    n = system()
    if "nvidia.com/gpu" in msg:
        return Diagnosis(STUCK, f"No node has a free GPU: {msg}",
                         "Another Pod holds the GPU (an old vLLM Pod under RollingUpdate: use strategy Recreate), "
                         "or the NVIDIA device plugin is not running (`kubectl describe node | grep nvidia.com/gpu` "
                         "should show Allocatable 1).", p.evidence())
    if "persistentvolumeclaim" in msg.lower():
        return Diagnosis(STUCK, f"The model volume's claim is not bound, so the Pod cannot be placed: {msg}",
                         f"Apply the PV and PVC from the storage chapter and check `kubectl get pvc -n "
                         f"{n.namespace}` says Bound (storageClassName \"\" on both).", p.evidence())
    if "taint" in msg:
        return Diagnosis(STUCK, f"Every node carries a taint the Pod does not tolerate: {msg}",
                         "Add a toleration for the GPU node's taint (e.g. nvidia.com/gpu) or remove the taint.",
                         p.evidence())
    return Diagnosis(STUCK, f"The scheduler cannot place the Pod: {msg or 'no message yet'}",
                     "Read the FailedScheduling event: it names the resource or rule that is missing.", p.evidence())


def _on_its_way(p: _Pod) -> Diagnosis | None:
    n = system()
    if p.waiting.get("reason") == "ContainerCreating" or p.phase == "Pending":
        pulling = any(t.startswith("Pulling") for t in p.events) and not any(t.startswith("Pulled") for t in p.events)
        what = ("pulling the image (many GB, minutes the first time)" if pulling
                else "creating the container and mounting its volumes")
        return Diagnosis(WAITING, f"The node is {what}.",
                         f"Wait; `kubectl get events -n {n.namespace} -w` shows progress.", p.evidence())
    if not p.state.get("running"):
        return None
    if any("Startup probe failed" in t for t in p.events) or \
            p.conditions.get("ContainersReady", {}).get("status") != "True":
        within = f" (the startup probe allows {p.startup_window:.0f} s)" if p.startup_window else ""
        return Diagnosis(WAITING, "vLLM is running and loading the weights; /health does not answer yet, so the "
                         f"startup probe fails — that is normal until loading ends{within}.",
                         f"Wait, and watch the log: `kubectl logs -f deploy/{n.deployment} -n {n.namespace}`.",
                         p.log_evidence())
    readiness = any("Readiness probe failed" in t for t in p.events)
    return Diagnosis(FAILING if readiness else WAITING,
                     "The container runs but the readiness probe fails: the Service sends it no traffic.",
                     "Check /health from inside the cluster and the engine's log.", p.evidence())


#: The order matters: a Ready Pod's old trouble is history, an OOM kill explains a crash loop.
_RULES = (_ready, _oom_killed, _image, _missing_config, _killed_by_probes, _crashing, _unscheduled, _on_its_way)


def diagnose_pod(pod: dict | None, events: list[dict] | None = None, log_tail: str = "",
                 container: str = "vllm", startup_window: float | None = None) -> Diagnosis:
    """Why is this Pod not serving yet, in plain words, with the fix.

    ``pod`` is the Pod as the API returns it (``kubectl get pod -o json`` shape:
    ``status.conditions``, ``status.containerStatuses[].state`` and ``.lastState``),
    ``events`` the Pod's events (``reason``, ``message``), ``log_tail`` the last lines of
    the container's log (or of its previous run).
    """
    events = list(events or [])
    require(all(isinstance(e, dict) for e in events),
            "events must be a list of Event dicts.", "Pass Cluster.pod_events(pod) or [].")
    require(isinstance(log_tail, str), "log_tail must be text.", "Pass the log as a string, or ''.")
    if pod is None:
        return Diagnosis(WAITING, "There is no Pod yet: the Deployment has not created one (or it was just deleted).",
                         f"Wait a few seconds. If none appears, `kubectl describe replicaset -n {system().namespace}` "
                         "shows why the ReplicaSet cannot create it (quota, admission, Pod Security).")
    require(isinstance(pod, dict) and isinstance(pod.get("status", {}), dict),
            "The Pod must be a dict shaped like the API object.", "Pass Cluster.get(ref) or a Pod loaded from JSON.")
    facts = _read(pod, events, log_tail, container, startup_window)
    for rule in _RULES:
        found = rule(facts)
        if found is not None:
            return found
    return Diagnosis(WAITING, f"The Pod is {facts.phase or 'in an unknown phase'}.", "Wait, then look again.",
                     facts.evidence())
