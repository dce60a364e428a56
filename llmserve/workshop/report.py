"""The GPU-box check as a plain-text report, and what to do about each problem.

Presentation layer of the workshop kit (``notebooks/gpu-box-check.ipynb``): it formats
the :class:`~llmserve.core.findings.Report` that :func:`llmserve.workshop.live.check_box`
returns, one line per check, with the fix and the link to the troubleshooting
section (:mod:`llmserve.troubleshooting.catalogue`) under each warning and error; the
command that does each check by hand; and where each threshold comes from.
"""
from __future__ import annotations

from llmserve.core import names
from llmserve.core.findings import ERROR, LEVELS, WARNING, Report
from llmserve.core.objects import arg_value, vllm_container
from llmserve.troubleshooting import catalogue
from llmserve.workshop import checks, live


def counts(report: Report) -> dict[str, int]:
    """How many lines have each level, in the order ok, warning, error, skip."""
    return {level: len(report.at(level)) for level in LEVELS}


def text(report: Report, from_dir: str = "notebooks") -> str:
    """One line per check (level, name, what it found), then its fix and link when it is a problem."""
    width = max((len(f.check) for f in report.findings), default=0)
    lines = []
    for f in report.findings:
        lines.append(f"{f.level.upper():7}  {f.check:<{width}}  {f.what}")
        if f.level in (ERROR, WARNING) and f.fix:
            lines.append(f"{'':7}  {'':<{width}}  fix: {f.fix}")
        if f.level in (ERROR, WARNING) and f.see:
            lines.append(f"{'':7}  {'':<{width}}  see: {catalogue.by_slug(f.see).link(from_dir)}")
    lines += ["", "  ".join(f"{n} {level}" for level, n in counts(report).items())]
    return "\n".join(lines)


def what_to_do(report: Report, from_dir: str = "notebooks", offline: bool = False) -> str:
    """Each warning and error with its fix and the troubleshooting section to read."""
    lines = []
    for f in report.findings:
        if f.level not in (ERROR, WARNING):
            continue
        lines.append(f"{f.level.upper()} {f.check}: {f.fix}")
        if f.see:
            entry = catalogue.by_slug(f.see)
            lines.append(f"     read: {entry.title} ({entry.link(from_dir)})")
    if not lines:
        return "Nothing to fix here." + (" (Offline: the cluster was not checked.)" if offline else "")
    return "\n".join(lines)


def by_hand() -> dict[str, str]:
    """For each line of the report, the command that checks the same by hand (on the box or with kubectl)."""
    n = names.system()
    uid, gid = checks.pod_user(live.course_deployment())
    smi = "nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv"
    return {
        "image pinned": "kubectl kustomize manifests/overlays/gpu-box | grep 'image:'",
        "model folder": f"sudo -u '#{uid}' -g '#{gid}' ls -l {n.host_model_dir}",
        "free disk": f"df -h {live.K3S_DATA_DIR} {n.pv_host_path}",
        "nvidia-smi": smi,
        "compute capability": smi,
        "torch sees CUDA": "python -c 'import torch; print(torch.cuda.is_available())'",
        "cluster reachable": "kubectl cluster-info",
        "GPU allocatable": "kubectl describe node | grep -A8 Allocatable",
        "CPU and memory allocatable": "kubectl get nodes -o custom-columns=NAME:.metadata.name,"
                                      "CPU:.status.allocatable.cpu,MEMORY:.status.allocatable.memory",
        "device plugin DaemonSet": "kubectl get daemonsets -A | grep nvidia-device-plugin",
        "default StorageClass": "kubectl get storageclass",
        "vLLM image on the node": f"sudo k3s crictl images | grep {n.image.rpartition(':')[0]}",
    }


def by_hand_text(report: Report) -> str:
    """The by-hand command of every line of ``report``, in its order."""
    commands = by_hand()
    width = max((len(f.check) for f in report.findings), default=0)
    return "\n".join(f"{f.check:<{width}}  $ {commands[f.check]}" for f in report.findings)


def where_values_come_from() -> str:
    """The values the checks compare with, and their sources (manifests, vLLM 0.32, public threads)."""
    dep = live.course_deployment()
    uid, gid = checks.pod_user(dep)
    quant = arg_value(vllm_container(dep), "--quantization")
    need = checks.MIN_CAPABILITY.get(quant, checks.UNQUANTIZED_MIN_CAPABILITY)
    return "\n".join([
        f"model folder on the box: {live.weights_dir()} (the Deployment's --model below the PV's hostPath)",
        f"the Pod's user and group: {uid}:{gid} (the Deployment's securityContext)",
        f"the Pod's requests: {checks.pod_requests(dep)} (the Deployment's resources)",
        f"--quantization={quant} needs compute capability >= {checks.capability_text(need)} "
        "(get_min_capability in vLLM 0.32)",
        f"free disk wanted: 2 x {checks.VLLM_IMAGE_BYTES_SEEN / 1e9:.1f} GB image + "
        f"{checks.AWQ_WEIGHT_BYTES / 1e9:.1f} GB weights = {checks.MIN_FREE_BYTES / 1e9:.1f} GB "
        "(vllm-project/vllm#22377; the model's file list)",
    ])
