"""Check the workshop's GPU box: what is there, what is missing, and the fix for each.

Used by ``notebooks/gpu-box-check.ipynb`` and ``book/workshop/gpu-box.md``::

    from llmserve import boxcheck
    from llmserve.world import mode
    MODE = mode.detect()
    checks = boxcheck.run_all(MODE)
    print(boxcheck.format_report(checks))

Two kinds of check:

* **local** checks always run, on whatever machine runs the notebook: the
  pinned image and the claim in the manifests, the model folder (at
  ``$COURSE_MODELS_DIR`` or ``/models``), free disk, ``nvidia-smi``, torch.
* **cluster** checks need the API server (``MODE.live``): the nodes' allocatable
  ``nvidia.com/gpu``, the device plugin DaemonSet, the default StorageClass,
  whether the vLLM image is already on the node. Offline each one reports
  ``skipped: offline — <reason>``.

The deciding logic is pure (functions over plain dicts, paths and text) and
unit-tested with fake nodes and temporary folders; :func:`run_all` only gathers
the inputs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from llmserve.core.errors import CourseError
from llmserve.workloads import arg_value, vllm_container

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
STATUSES = (PASS, WARN, FAIL, SKIP)

GPU_RESOURCE = "nvidia.com/gpu"
DEPLOYMENT_FILE = "base/vllm-deployment.yaml"
PVC_FILE = "base/model-pvc.yaml"
PV_FILE = "base/model-pv.yaml"
#: The image the course pins (common brief: vLLM 0.32.0).
EXPECTED_IMAGE = "vllm/vllm-openai:v0.32.0"
DEFAULT_STORAGECLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"

#: Sizes that set the disk and download checks (bytes).
#: The AWQ build's files are about 5.6 GB (shared/facts.md, the model card's file list).
AWQ_WEIGHT_BYTES = 5.6e9
#: One public pull of vllm/vllm-openai:v0.7.1 reported this image size (vllm-project/aibrix#1054);
#: newer images are not smaller, so it is a floor, not an estimate.
VLLM_IMAGE_BYTES_SEEN = 16_525_161_745
#: Free space wanted on the box: image + weights, with half again as headroom for the unpacked layers.
MIN_FREE_BYTES = 1.5 * (VLLM_IMAGE_BYTES_SEEN + AWQ_WEIGHT_BYTES)

#: Minimum CUDA compute capability per quantization method, from vLLM's
#: ``get_min_capability()`` (AWQ 75, the Marlin kernels 80); see the docs'
#: "supported hardware" table for quantization.
MIN_COMPUTE_CAPABILITY = {"awq": 7.5, "awq_marlin": 8.0, None: 7.0}

#: The user and group the Deployment runs as (runAsUser/runAsGroup 1000): they must be able to read the weights.
POD_UID = 1000
POD_GID = 1000


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: str            # pass | warn | fail | skip
    detail: str
    fix: str = ""
    kind: str = "local"    # "local" or "cluster"
    see: str | None = None  # a troubleshooting slug (book/troubleshooting.md#ts-<see>)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")


# ----------------------------------------------------------------- manifests
def model_subpath(deployment: dict) -> PurePosixPath:
    """The model folder relative to the volume's mount point: ``qwen25-coder-7b-awq`` for ``/models/…``."""
    container = vllm_container(deployment)
    model = arg_value(container, "--model")
    if not model:
        raise CourseError("The Deployment passes no --model argument.", "Add --model=/models/<folder> to its args.")
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts") or []}
    pvc_volumes = {v["name"] for v in deployment["spec"]["template"]["spec"].get("volumes") or []
                   if "persistentVolumeClaim" in v}
    for name, mount in mounts.items():
        if name in pvc_volumes and PurePosixPath(model).is_relative_to(mount):
            return PurePosixPath(model).relative_to(mount)
    raise CourseError(f"--model={model} is not under the mount point of the model claim.",
                      "Mount model-storage-claim at /models and pass --model=/models/<folder>.")


def check_image(deployment: dict, expected: str = EXPECTED_IMAGE) -> Check:
    image = vllm_container(deployment).get("image", "")
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    fix = f"Set image: {expected} in manifests/{DEPLOYMENT_FILE}."
    if "@sha256:" in image:
        return Check("image pinned", PASS, f"{image} is pinned by digest")
    if not tag or tag == "latest":
        return Check("image pinned", FAIL, f"{image} has no fixed tag: each pull may bring another vLLM", fix)
    if image != expected:
        return Check("image pinned", WARN, f"{image} is pinned, but the course is written for {expected}", fix)
    return Check("image pinned", PASS, f"{image} (the version the course is written for)")


def check_claim_opts_out(pvc: dict, pv: dict) -> Check:
    """The course's claim must not fall to the default StorageClass (ts-pvc-default-storageclass)."""
    pvc_class = pvc.get("spec", {}).get("storageClassName")
    pv_class = pv.get("spec", {}).get("storageClassName")
    if pvc_class != "" or pv_class != "":
        return Check("claim opts out of the default StorageClass", FAIL,
                     f'PVC storageClassName={pvc_class!r}, PV storageClassName={pv_class!r}: the claim would get a '
                     "new empty volume from the default class", 'Set storageClassName: "" on both.',
                     see="pvc-default-storageclass")
    return Check("claim opts out of the default StorageClass", PASS,
                 'storageClassName: "" on the PV and the PVC: the claim binds the PV over /models')


# -------------------------------------------------------------- model folder
def _readable_by(st: os.stat_result, uid: int, gid: int, is_dir: bool) -> bool:
    """Whether a process with this uid/gid may read the file (or list and enter the directory)."""
    need = 0o5 if is_dir else 0o4
    if st.st_uid == uid:
        bits = (st.st_mode >> 6) & 0o7
    elif st.st_gid == gid:
        bits = (st.st_mode >> 3) & 0o7
    else:
        bits = st.st_mode & 0o7
    return (bits & need) == need


def check_model_dir(path: Path, expected_bytes: float | None = AWQ_WEIGHT_BYTES, uid: int = POD_UID,
                    gid: int = POD_GID) -> Check:
    """The weights folder: config, every safetensors shard, tokenizer files, complete and readable."""
    name = "model folder"
    fix_download = ("On the box: `hf download Qwen/Qwen2.5-Coder-7B-Instruct-AWQ --local-dir "
                    f"{path}` (see the GPU box page).")
    if not path.is_dir():
        return Check(name, FAIL, f"{path} does not exist", fix_download, see="hostpath-missing")
    files = {p.name: p for p in path.iterdir() if p.is_file()}
    problems = []
    if "config.json" not in files:
        return Check(name, FAIL, f"{path} has no config.json: vLLM would not see a model here",
                     fix_download, see="model-path-wrong")
    try:
        config = json.loads(files["config.json"].read_text())
    except (OSError, ValueError) as exc:
        return Check(name, FAIL, f"{path}/config.json cannot be read as JSON ({exc})", fix_download)
    shards = sorted(n for n in files if n.endswith(".safetensors"))
    if not shards:
        problems.append("no *.safetensors weights")
    index = files.get("model.safetensors.index.json")
    if index is not None:
        try:
            wanted = set(json.loads(index.read_text()).get("weight_map", {}).values())
        except (OSError, ValueError):
            wanted = set()
            problems.append("model.safetensors.index.json is not valid JSON")
        missing = sorted(wanted - set(shards))
        if missing:
            problems.append(f"shards listed in the index but missing: {', '.join(missing)}")
    if "tokenizer_config.json" not in files:
        problems.append("no tokenizer_config.json")
    if "tokenizer.json" not in files and not {"vocab.json", "merges.txt"} <= set(files):
        problems.append("no tokenizer.json (nor vocab.json + merges.txt)")
    partial = [str(p.relative_to(path)) for p in path.rglob("*.incomplete")]
    if partial:
        problems.append(f"unfinished download: {', '.join(partial[:3])}")
    if problems:
        return Check(name, FAIL, f"{path}: " + "; ".join(problems), fix_download, see="model-path-wrong")

    unreadable = [str(p.relative_to(path)) for p in [path, *files.values()]
                  if not _readable_by(p.stat(), uid, gid, p.is_dir())]
    weight_bytes = sum(files[s].stat().st_size for s in shards)
    quant = (config.get("quantization_config") or {}).get("quant_method")
    detail = (f"{path}: config.json, {len(shards)} safetensors shard(s) ({weight_bytes / 1e9:.2f} GB), "
              f"tokenizer files; quant_method={quant}")
    if unreadable:
        return Check(name, FAIL, f"{detail}; not readable by uid {uid} (the Pod's user): {', '.join(unreadable[:3])}",
                     f"`sudo chmod -R a+rX {path}`: a hostPath volume ignores fsGroup, so the files need "
                     "world-read permission.", see="model-path-wrong")
    if quant != "awq":
        return Check(name, WARN, detail + " (the course's Deployment expects an AWQ build)",
                     "Download Qwen/Qwen2.5-Coder-7B-Instruct-AWQ, or change --quantization.",
                     see="quantization-capability")
    if expected_bytes and weight_bytes < 0.9 * expected_bytes:
        return Check(name, WARN, detail + f" — smaller than the ≈{expected_bytes / 1e9:.1f} GB expected",
                     "Compare with the file list on the model's Hub page; re-run the download.")
    return Check(name, PASS, detail)


def check_free_disk(path: Path, min_free_bytes: float = MIN_FREE_BYTES,
                    usage: Callable = shutil.disk_usage) -> Check:
    free = usage(path).free
    detail = f"{free / 1e9:.0f} GB free on the filesystem of {path}"
    if free < min_free_bytes:
        return Check("free disk", WARN, f"{detail}; want ≥ {min_free_bytes / 1e9:.0f} GB for the image and the weights",
                     "Free space (`sudo k3s crictl rmi --prune`) or give /var/lib/rancher and /models a bigger disk.",
                     see="disk-pressure")
    return Check("free disk", PASS, detail)


# ----------------------------------------------------------------------- GPU
def parse_nvidia_smi(csv_text: str) -> list[dict]:
    """Rows of ``nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv,noheader,nounits``."""
    gpus = []
    for line in csv_text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            continue
        name, mem, cap, driver = parts[:4]
        try:
            gpus.append({"name": name, "memory_mib": int(float(mem)), "compute_cap": float(cap), "driver": driver})
        except ValueError:
            continue
    return gpus


def check_nvidia_smi(gpus: list[dict] | None, error: str | None, on_box: bool) -> Check:
    if gpus:
        desc = "; ".join(f"{g['name']} ({g['memory_mib'] / 1024:.0f} GiB, compute capability {g['compute_cap']}, "
                         f"driver {g['driver']})" for g in gpus)
        return Check("nvidia-smi", PASS, desc)
    fix = "Install the NVIDIA driver on the box (see the GPU box page) and reboot; `nvidia-smi` must list the GPU."
    if on_box:
        return Check("nvidia-smi", FAIL, error or "nvidia-smi lists no GPU", fix)
    return Check("nvidia-smi", SKIP, f"{error or 'no GPU listed'} — expected on a machine that is not the GPU box", fix)


def check_compute_capability(gpus: list[dict] | None, quantization: str | None) -> Check:
    need = MIN_COMPUTE_CAPABILITY.get(quantization, MIN_COMPUTE_CAPABILITY[None])
    name = "compute capability"
    if not gpus:
        return Check(name, SKIP, f"no GPU seen here; --quantization={quantization} needs ≥ {need}")
    have = max(g["compute_cap"] for g in gpus)
    if have < need:
        alt = " (--quantization=awq runs from 7.5)" if quantization == "awq_marlin" and have >= 7.5 else ""
        return Check(name, FAIL, f"GPU has {have}, --quantization={quantization} needs ≥ {need}",
                     f"Change the Deployment's --quantization{alt}, or use a newer GPU.",
                     see="quantization-capability")
    return Check(name, PASS, f"GPU has {have} ≥ {need} needed by --quantization={quantization}")


def check_torch(device: str, reason: str, on_box: bool) -> Check:
    if device == "cuda":
        return Check("torch sees CUDA", PASS, reason)
    fix = ("Install a CUDA build of torch in the notebook environment, or ignore this if the notebooks run "
           "elsewhere: vLLM itself runs in its own image.")
    return Check("torch sees CUDA", WARN if on_box else SKIP, f"{reason} (notebooks' GPU measurements fall back to the CPU)", fix)


# ------------------------------------------------------------------- cluster
def _quantity_int(value) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def gpu_allocatable(nodes: Iterable[dict]) -> dict[str, int]:
    """node name -> allocatable nvidia.com/gpu (0 when the node advertises none)."""
    return {n["metadata"]["name"]: _quantity_int(((n.get("status") or {}).get("allocatable") or {}).get(GPU_RESOURCE))
            for n in nodes}


def gpus_requested(pods: Iterable[dict]) -> dict[str, int]:
    """node name -> nvidia.com/gpu limits of the Pods running or pending there (not finished ones)."""
    used: dict[str, int] = {}
    for p in pods:
        if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        node = (p.get("spec") or {}).get("nodeName")
        if not node:
            continue
        for c in (p.get("spec") or {}).get("containers") or []:
            limits = (c.get("resources") or {}).get("limits") or {}
            used[node] = used.get(node, 0) + _quantity_int(limits.get(GPU_RESOURCE))
    return used


def check_gpu_nodes(nodes: list[dict], pods: list[dict] | None = None) -> Check:
    name = "GPU allocatable"
    alloc = gpu_allocatable(nodes)
    with_gpu = {n: g for n, g in alloc.items() if g > 0}
    if not with_gpu:
        return Check(name, FAIL, f"no node advertises {GPU_RESOURCE} ({', '.join(alloc) or 'no nodes'})",
                     "Install the NVIDIA container toolkit and the device plugin (see the GPU box page).",
                     kind="cluster", see="insufficient-gpu")
    used = gpus_requested(pods or [])
    desc = ", ".join(f"{n}: {g} allocatable, {used.get(n, 0)} requested" for n, g in with_gpu.items())
    if all(used.get(n, 0) >= g for n, g in with_gpu.items()):
        return Check(name, WARN, desc + " — no GPU is free for a new vLLM Pod",
                     "Find the Pod holding it: `kubectl get pods -A -o wide`; delete test Pods before the workshop.",
                     kind="cluster", see="insufficient-gpu")
    return Check(name, PASS, desc, kind="cluster")


def check_device_plugin(daemonsets: list[dict]) -> Check:
    name = "device plugin DaemonSet"
    plugins = [d for d in daemonsets if "nvidia-device-plugin" in d["metadata"]["name"]]
    if not plugins:
        return Check(name, FAIL, "no DaemonSet named *nvidia-device-plugin* in any namespace",
                     "helm upgrade -i nvdp nvdp/nvidia-device-plugin --namespace nvidia-device-plugin "
                     "--create-namespace (see the GPU box page).", kind="cluster", see="insufficient-gpu")
    lines, ok = [], True
    for d in plugins:
        st = d.get("status") or {}
        desired, ready = st.get("desiredNumberScheduled", 0), st.get("numberReady", 0)
        ok = ok and desired > 0 and ready == desired
        lines.append(f"{d['metadata'].get('namespace')}/{d['metadata']['name']}: {ready}/{desired} ready")
    if not ok:
        return Check(name, FAIL, "; ".join(lines),
                     "Read its log: `kubectl logs -n <namespace> ds/<name>`.", kind="cluster",
                     see="device-plugin-no-gpus")
    return Check(name, PASS, "; ".join(lines), kind="cluster")


def default_storageclasses(storage_classes: list[dict]) -> list[str]:
    return [sc["metadata"]["name"] for sc in storage_classes
            if ((sc["metadata"].get("annotations") or {}).get(DEFAULT_STORAGECLASS_ANNOTATION) == "true")]


def check_default_storageclass(storage_classes: list[dict]) -> Check:
    name = "default StorageClass"
    defaults = default_storageclasses(storage_classes)
    if not defaults:
        return Check(name, PASS, "none: a claim without storageClassName stays Pending instead of getting a "
                     "new volume", kind="cluster")
    return Check(name, WARN, f"{', '.join(defaults)} is the default: any claim WITHOUT storageClassName gets a "
                 "new empty volume from it instead of the PV over /models (the course's claim opts out)",
                 "Nothing to change for the course's manifests; warn participants who write their own claim.",
                 kind="cluster", see="pvc-default-storageclass")


def check_image_on_node(nodes: list[dict], image: str = EXPECTED_IMAGE) -> Check:
    name = "vLLM image on the node"
    wanted = {image, f"docker.io/{image}"}
    have = [n["metadata"]["name"] for n in nodes
            if any(wanted & set(img.get("names") or []) for img in ((n.get("status") or {}).get("images") or []))]
    if have:
        return Check(name, PASS, f"{image} already pulled on {', '.join(have)}", kind="cluster")
    return Check(name, WARN, f"{image} is not on any node yet: the first start will wait for a large pull",
                 f"Pull it the day before, on the box: `sudo k3s crictl pull docker.io/{image}`.",
                 kind="cluster", see="disk-pressure")


def skipped_offline(name: str, reason: str) -> Check:
    return Check(name, SKIP, f"skipped: offline — {reason}", kind="cluster")


# ------------------------------------------------------------ orchestration
CLUSTER_CHECKS = ("cluster reachable", "GPU allocatable", "device plugin DaemonSet", "default StorageClass",
                  "vLLM image on the node")


def models_root() -> Path:
    """Where the weights live: ``$COURSE_MODELS_DIR`` or the PV's hostPath (``/models``)."""
    return Path(os.environ.get("COURSE_MODELS_DIR") or "/models")


def on_the_box() -> bool:
    """Whether this machine looks like the GPU box (``COURSE_ON_BOX=1``, or ``/models`` exists)."""
    return os.environ.get("COURSE_ON_BOX") == "1" or Path("/models").is_dir()


def query_nvidia_smi(run: Callable = subprocess.run) -> tuple[list[dict] | None, str | None]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None, "nvidia-smi is not installed on this machine"
    try:
        proc = run([exe, "--query-gpu=name,memory.total,compute_cap,driver_version",
                    "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"nvidia-smi failed: {exc}"
    if proc.returncode != 0:
        return None, f"nvidia-smi failed: {(proc.stderr or proc.stdout).strip()[:200]}"
    return parse_nvidia_smi(proc.stdout), None


def _guard(name: str, kind: str, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except CourseError as err:
        return Check(name, FAIL, err.what, err.fix, kind=kind)


def local_checks(device: str, device_reason: str, models_dir: Path | None = None,
                 nvidia: tuple[list[dict] | None, str | None] | None = None) -> list[Check]:
    from llmserve.world import manifests
    on_box = on_the_box()
    dep = manifests.load_one(DEPLOYMENT_FILE)
    checks = [
        _guard("image pinned", "local", lambda: check_image(dep)),
        _guard("claim opts out of the default StorageClass", "local",
               lambda: check_claim_opts_out(manifests.load_one(PVC_FILE), manifests.load_one(PV_FILE))),
    ]
    root = models_dir or models_root()
    model_dir = root / model_subpath(dep)
    if root.is_dir() or on_box:
        checks.append(check_model_dir(model_dir))
    else:
        checks.append(Check("model folder", SKIP,
                            f"would check {model_dir} on the GPU box; set COURSE_MODELS_DIR to a folder that holds "
                            f"{model_subpath(dep)} to check a copy here"))
    checks.append(check_free_disk(root if root.is_dir() else Path("/")))
    gpus, error = nvidia if nvidia is not None else query_nvidia_smi()
    checks.append(check_nvidia_smi(gpus, error, on_box))
    checks.append(check_compute_capability(gpus, arg_value(vllm_container(dep), "--quantization")))
    checks.append(check_torch(device, device_reason, on_box))
    return checks


def cluster_checks(cluster) -> list[Check]:
    """The live checks, reading the cluster through an ``llmserve.world.cluster.Cluster``."""
    out = [Check("cluster reachable", PASS, f"API server {cluster.host} (context {cluster.context})", kind="cluster")]
    nodes: list[dict] = []

    def nodes_check():
        nodes.extend(cluster.list("v1", "Node"))
        return check_gpu_nodes(nodes, cluster.list("v1", "Pod"))

    out.append(_guard("GPU allocatable", "cluster", nodes_check))
    out.append(_guard("device plugin DaemonSet", "cluster",
                      lambda: check_device_plugin(cluster.list("apps/v1", "DaemonSet"))))
    out.append(_guard("default StorageClass", "cluster",
                      lambda: check_default_storageclass(cluster.list("storage.k8s.io/v1", "StorageClass"))))
    out.append(_guard("vLLM image on the node", "cluster", lambda: check_image_on_node(nodes)))
    return out


def run_all(mode, cluster_factory: Callable | None = None, models_dir: Path | None = None) -> list[Check]:
    """Every check, in report order. Offline, the cluster checks are skipped with the mode's reason."""
    checks = local_checks(mode.device, mode.device_reason, models_dir)
    if not mode.live:
        return checks + [skipped_offline(n, mode.cluster_reason) for n in CLUSTER_CHECKS]
    try:
        if cluster_factory is None:
            from llmserve.world.cluster import Cluster
            cluster_factory = lambda: Cluster(mode.context)  # noqa: E731
        cluster = cluster_factory()
    except CourseError as err:
        return checks + [Check("cluster reachable", FAIL, err.what, err.fix, kind="cluster")]
    return checks + cluster_checks(cluster)


# ---------------------------------------------------------------- reporting
def by_name(checks: Iterable[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def summary(checks: Iterable[Check]) -> dict[str, int]:
    counts = {s: 0 for s in STATUSES}
    for c in checks:
        counts[c.status] += 1
    return counts


def format_report(checks: list[Check], from_dir: str = "notebooks") -> str:
    """A plain-text report: one line per check, then its fix and the troubleshooting link."""
    page = "troubleshooting.html" if from_dir == "book" else "../book/troubleshooting.html"
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for c in checks:
        lines.append(f"{c.status.upper():4}  {c.name:<{width}}  {c.detail}")
        if c.status in (FAIL, WARN) and c.fix:
            lines.append(f"{'':4}  {'':<{width}}  fix: {c.fix}")
        if c.status in (FAIL, WARN) and c.see:
            lines.append(f"{'':4}  {'':<{width}}  see: {page}#ts-{c.see}")
    counts = summary(checks)
    lines.append("")
    lines.append("  ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


# ------------------------------------------------------- instructor helpers
def sha256_files(path: Path, pattern: str = "*.safetensors", chunk: int = 1 << 24) -> dict[str, str]:
    """SHA-256 of each matching file (minutes for the 5.6 GB of weights): compare with the Hub's file pages."""
    import hashlib
    out = {}
    for f in sorted(path.glob(pattern)):
        h = hashlib.sha256()
        with f.open("rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
        out[f.name] = h.hexdigest()
    return out


_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def compare_checksums(computed: dict[str, str], expected: dict[str, str]) -> list[str]:
    """Names whose checksum differs from (or is missing in) ``expected``; [] when all match."""
    bad = [n for n, h in computed.items() if expected.get(n, "").lower() != h]
    bad += [n for n in expected if n not in computed]
    for n, h in expected.items():
        if not _SHA_RE.match(h.lower()):
            raise ValueError(f"{n}: {h!r} is not a SHA-256 hex digest")
    return sorted(set(bad))
