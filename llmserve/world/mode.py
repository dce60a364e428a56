"""The one place that decides how the notebooks run, and says why (Live: it probes the cluster and torch).

Used at the top of every notebook::

    from llmserve.world import mode
    MODE = mode.detect()
    MODE.banner()        # prints "Cluster mode: OFFLINE — no kubeconfig at ~/.kube/config …"

* **cluster**: ``live`` when a kubeconfig exists and its API server answers,
  ``offline`` otherwise. ``COURSE_MODE=offline`` forces offline;
  ``COURSE_MODE=live`` makes an unreachable cluster an error instead.
* **device**: ``cuda`` when torch sees a GPU, else ``cpu``.
  ``COURSE_DEVICE=cpu`` forces the CPU.

Everything else asks the :class:`Mode` object; no other module probes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from llmserve.core.errors import ClusterError, ServerError
from llmserve.core.paths import REPO_ROOT
from llmserve.world import cluster  # imports the kubernetes client only when it connects

PROBE_TIMEOUT_S = 3.0
T = TypeVar("T")


@dataclass(frozen=True)
class Mode:
    cluster: str          # "live" or "offline"
    cluster_reason: str
    device: str           # "cuda" or "cpu"
    device_reason: str
    context: str | None = None

    @property
    def live(self) -> bool:
        return self.cluster == "live"

    @property
    def gpu(self) -> bool:
        return self.device == "cuda"

    def act(self, would: str, action: Callable[[], T]) -> T | None:
        """Run ``action`` against the cluster in live mode; offline, say what it would do.

        The one switch every live cell goes through, so each notebook has one
        code path: ``MODE.act("apply the PV and PVC", lambda: cluster.apply(objs))``.
        """
        if self.live:
            return action()
        print(f"[offline] Would {would}. (No cluster: {self.cluster_reason}.)")
        return None

    def describe(self) -> str:
        """What the first cell of every lab prints: the mode, why, and how to switch it."""
        lines = [f"Cluster mode: {self.cluster.upper()} — {self.cluster_reason}",
                 f"Compute device: {self.device} — {self.device_reason}"]
        if self.live:
            lines += [f"Cells act on this cluster (context: {self.context or 'in-cluster service account'}).",
                      "To switch: COURSE_CONTEXT=NAME picks another context of the kubeconfig "
                      "(KUBECONFIG, else ~/.kube/config); COURSE_MODE=offline works without the cluster.",
                      "Set them before starting Jupyter, or in a cell (%env COURSE_MODE=offline), "
                      "then run the lab again from this cell."]
        else:
            lines += ["Cells that would change a cluster print what they would do instead; "
                      "everything else (validation, calculators, measurements) runs for real.",
                      "To go live: KUBECONFIG=PATH (else ~/.kube/config) naming a kubeconfig whose cluster "
                      "answers, COURSE_CONTEXT=NAME for a context other than its current one, and COURSE_MODE "
                      "unset (COURSE_MODE=live makes an unreachable cluster an error).",
                      "Set them before starting Jupyter, or in a cell (%env KUBECONFIG=PATH), "
                      "then run the lab again from this cell."]
        if self.gpu:
            lines.append("COURSE_DEVICE=cpu makes the labs ignore the GPU.")
        return "\n".join(lines)

    def banner(self) -> None:
        print(self.describe())


def detect_cluster() -> tuple[str, str, str | None]:
    """Return ``(mode, reason, context)`` for the cluster side."""
    forced = os.environ.get("COURSE_MODE", "").strip().lower()
    if forced == "offline":
        return "offline", "COURSE_MODE=offline is set", None
    if forced not in ("", "live", "auto"):
        raise ClusterError(f"COURSE_MODE={forced!r} is not a mode this course knows.",
                           "Set COURSE_MODE to 'live', 'offline' or leave it unset.")
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    path = cluster.kubeconfig_path()
    if not path.exists() and not in_cluster:
        reason = f"no kubeconfig at {path} (and not running inside a Pod)"
        if forced == "live":
            raise ClusterError(f"COURSE_MODE=live but {reason}.",
                               "Point KUBECONFIG at your cluster's kubeconfig, or unset COURSE_MODE.")
        return "offline", reason, None
    try:
        info = cluster.probe(timeout_s=PROBE_TIMEOUT_S)
    except ClusterError as err:
        if forced == "live":
            raise
        return "offline", f"a kubeconfig exists but the cluster did not answer: {err.what}", None
    return "live", f"API server {info['host']} answered (Kubernetes {info['version']})", info["context"]


def detect_device() -> tuple[str, str]:
    """Return ``(device, reason)`` for torch work."""
    if os.environ.get("COURSE_DEVICE", "").strip().lower() == "cpu":
        return "cpu", "COURSE_DEVICE=cpu is set"
    try:
        import torch
    except ImportError:
        return "cpu", "torch is not installed"
    if torch.cuda.is_available():
        return "cuda", f"torch sees {torch.cuda.get_device_name(0)}"
    return "cpu", "torch sees no CUDA GPU"


def detect() -> Mode:
    """Decide both sides once; notebooks call this in their first cell."""
    cluster_mode, cluster_reason, context = detect_cluster()
    device, device_reason = detect_device()
    return Mode(cluster_mode, cluster_reason, device, device_reason, context)


def vllm_python() -> Path:
    """The interpreter of the local CPU vLLM environment that scripts/setup.sh makes (may not exist).

    ``COURSE_VLLM_PYTHON`` overrides it.
    """
    return Path(os.environ.get("COURSE_VLLM_PYTHON", REPO_ROOT / ".venv-vllm" / "bin" / "python"))


def detect_server(mode: Mode) -> tuple[str, str]:
    """Where the capstone and KV-cache labs send requests: ``cluster``, ``local`` or ``none``.

    ``COURSE_SERVER=local`` prefers the local engine even with a live cluster.
    """
    forced = os.environ.get("COURSE_SERVER", "").strip().lower()
    if mode.live and forced != "local":
        return "cluster", "a live cluster: requests go through a port-forward to the vLLM Service"
    py = vllm_python()
    if py.exists():
        return "local", f"no cluster, so a real vLLM engine runs on this machine's CPU ({py})"
    return "none", (f"no cluster and no local vLLM at {py}: run `bash scripts/setup.sh` to install it "
                    "(or set COURSE_VLLM_PYTHON)")


def ran_for_real(kind: str, lab: str) -> bool:
    """Whether a lab's experiment had something to talk to (``kind`` from :func:`detect_server` is not ``none``).

    A lab's checks of its measurements run only when this is true. Under CI (the ``CI``
    variable that ``.ci/run`` sets) an experiment with nothing to talk to is an error, not a
    quiet skip: CI installs the CPU engine, so its absence there is a broken set-up.
    """
    if kind == "none" and os.environ.get("CI"):
        raise ServerError(f"The {lab} had nothing to talk to under CI, so its checks would pass without running.",
                          "CI installs the CPU engine, the router and nginx with `bash scripts/setup.sh`: "
                          "look at why it did not (its log is at the top of the CI output).")
    return kind != "none"
