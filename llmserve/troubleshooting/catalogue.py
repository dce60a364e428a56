"""The catalogue of failures people hit running vLLM on Kubernetes, and how to recognise each one.

Pure rules of the troubleshooting chapter (``book/troubleshooting.md``), also used by
every lab that meets a pending claim, a crash loop or a failing probe, and by the
workshop's box check (its findings point at entries by slug)::

    from llmserve.troubleshooting import catalogue
    for entry in catalogue.match(event_message):
        print(entry.title, "→", entry.doc_anchor)

The entries below are the ONE list. The book page has one section per entry,
labelled ``(ts-<slug>)=`` and titled with ``Entry.title``; there it quotes the real
error strings (from public issue threads, docs and the pinned vLLM release) that
``tests/troubleshooting/test_catalogue.py`` feeds back through :func:`match` to
prove each pattern recognises its own symptoms. Names of the course's objects in
the advice come from the manifests (:func:`llmserve.core.names.system`).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from llmserve.core.names import SystemNames, system

#: The page (relative to the built ``book/`` folder) that explains every entry.
DOC_PAGE = "troubleshooting.html"

#: Chapter sections, in the order the book presents them.
CATEGORIES = ("storage", "scheduling", "probes", "memory", "gpu", "model-loading", "networking", "client")


@functools.cache
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Entry:
    """One failure: how to recognise it, why it happens, what to do."""

    slug: str                 # stable id; the book label is ``ts-<slug>``
    title: str                # the section heading in the book, word for word
    category: str             # one of CATEGORIES
    cause: str                # one or two sentences
    fix: str                  # the first thing to do
    patterns: tuple[str, ...] = field(default=(), repr=False)  # regexes over events, logs, exceptions

    @property
    def label(self) -> str:
        return f"ts-{self.slug}"

    @property
    def doc_anchor(self) -> str:
        """``troubleshooting.html#ts-<slug>``: the link from another page of ``book/``."""
        return f"{DOC_PAGE}#{self.label}"

    def link(self, from_dir: str = "book") -> str:
        """The relative link from a page in ``from_dir`` (``"book"`` or ``"notebooks"``)."""
        return self.doc_anchor if from_dir == "book" else f"../book/{self.doc_anchor}"

    def search(self, text: str) -> re.Match | None:
        """The earliest match of any of this entry's patterns in ``text``."""
        hits = [m for m in (_compiled(p).search(text) for p in self.patterns) if m]
        return min(hits, key=lambda m: m.start()) if hits else None


def _storage(n: SystemNames) -> tuple[Entry, ...]:
    return (
        Entry(
            "pvc-unbound", "Pod Pending: unbound PersistentVolumeClaim", "storage",
            cause=f"The Pod mounts {n.pvc}, and that claim is not Bound yet, so the scheduler will not place "
                  "the Pod anywhere; a claim re-created after a delete meets a Released volume that still "
                  "holds the old claim's uid.",
            fix=f"Run `kubectl get pv,pvc -n {n.namespace}` and `kubectl describe pvc {n.pvc} -n {n.namespace}`; "
                "apply the PersistentVolume, and if it says Released, clear its old claimRef.uid.",
            patterns=(r"pod has unbound (immediate )?PersistentVolumeClaims",
                      r"volume \"[^\"]+\" already bound to a different claim"),
        ),
        Entry(
            "pvc-no-matching-pv", "PVC Pending: no PersistentVolume matches the claim", "storage",
            cause="The claim asks for storageClassName \"\" (no dynamic provisioning) and no PersistentVolume with "
                  "the same class, access mode and enough capacity exists, or the one named in volumeName is "
                  "missing.",
            fix="Apply manifests/base/model-pv.yaml, then compare the PV and the PVC field by field "
                "(storageClassName, accessModes, capacity, claimRef/volumeName).",
            patterns=(r"no persistent volumes available for this claim",),
        ),
        Entry(
            "pvc-default-storageclass", "PVC without a class: the default StorageClass takes the claim",
            "storage",
            cause="A claim without storageClassName gets the cluster's default class (local-path on k3s), whose "
                  "provisioner either makes a fresh, empty volume or, for a ReadOnlyMany claim, refuses and "
                  f"leaves it Pending; the PersistentVolume over {n.pv_host_path} is never considered.",
            fix="Set storageClassName: \"\" on both the PV and the PVC (and volumeName on the PVC); the field is "
                "immutable, so delete the claim and create it again.",
            patterns=(r"waiting for first consumer to be created before binding", r"\bWaitForFirstConsumer\b",
                      r"NodePath only supports ReadWriteOnce and ReadWriteOncePod"),
        ),
        Entry(
            "hostpath-missing", "FailedMount: hostPath type check failed", "storage",
            cause=f"The PersistentVolume says hostPath {n.pv_host_path} with type: Directory, and that directory "
                  "does not exist on the node the Pod landed on.",
            fix=f"Create {n.pv_host_path} on the node and put the weights in {n.host_model_dir} (see the GPU "
                "box page); on a multi-node cluster, pin the Pod to the node that has them.",
            patterns=(r"hostPath type check failed",),
        ),
        Entry(
            "readonly-filesystem", "OSError: [Errno 30] Read-only file system", "storage",
            cause="Something in the container writes under a read-only path: a library cache under $HOME with "
                  "readOnlyRootFilesystem, or the Hugging Face cache on the read-only model volume.",
            fix="Point HOME (and caches) at a writable emptyDir such as /tmp, and load the model from its local "
                "path with HF_HUB_OFFLINE=1 so nothing tries to write next to the weights.",
            patterns=(r"Read-only file system", r"\[Errno 30\]"),
        ),
    )


def _scheduling(n: SystemNames) -> tuple[Entry, ...]:
    return (
        Entry(
            "insufficient-gpu", "Pod Pending: Insufficient nvidia.com/gpu", "scheduling",
            cause="No node has a free nvidia.com/gpu: the device plugin is not advertising the GPU, or another "
                  "Pod already holds it.",
            fix="Check `kubectl describe node | grep -A8 Allocatable` for nvidia.com/gpu, the device plugin "
                "DaemonSet, and which Pods request GPUs (`kubectl get pods -A -o wide`).",
            patterns=(r"Insufficient nvidia\.com/gpu",),
        ),
        Entry(
            "rollout-gpu-deadlock", "Rollout stuck: the new Pod waits for the GPU the old Pod holds", "scheduling",
            cause="With one GPU, the RollingUpdate strategy starts the new Pod before it stops the old one; "
                  "the new Pod can never get the GPU and the rollout times out.",
            fix="Use strategy: Recreate for single-GPU Deployments (the course's Deployment does); to unstick "
                "a running rollout, scale to 0 and back to 1.",
            patterns=(r"exceeded its progress deadline", r"\bProgressDeadlineExceeded\b",
                      r"Insufficient nvidia\.com/gpu"),
        ),
        Entry(
            "untolerated-taint", "Pod Pending: the GPU node has a taint the Pod does not tolerate", "scheduling",
            cause="The GPU node is tainted (often nvidia.com/gpu:NoSchedule, to keep other work off it) and the "
                  "Pod has no matching toleration; the device plugin's own Pods need one too.",
            fix="Add a toleration for the taint (the gpu-box overlay tolerates nvidia.com/gpu), or remove the "
                "taint on a single-node box: `kubectl taint nodes --all nvidia.com/gpu-`.",
            patterns=(r"had untolerated taint", r"had taint \{[^}]*\}, that the pod didn't tolerate"),
        ),
        Entry(
            "disk-pressure", "Node disk pressure: evictions and failed image pulls", "scheduling",
            cause="The vLLM image is tens of gigabytes on disk and the weights take several more; when the "
                  "node's disk fills, the kubelet evicts Pods and cannot pull images.",
            fix="Free disk on the node (`df -h /var/lib/rancher`), remove unused images "
                "(`sudo k3s crictl rmi --prune`) and pull the vLLM image before the workshop.",
            patterns=(r"low on resource: ephemeral-storage", r"\bNodeHasDiskPressure\b",
                      r"Failed to garbage collect required amount of images", r"no space left on device"),
        ),
    )


def _probes(n: SystemNames) -> tuple[Entry, ...]:
    return (
        Entry(
            "startup-probe", "Startup probe failed: connection refused, then the container restarts", "probes",
            cause="vLLM answers /health only after the weights are loaded; if the startup probe's budget "
                  "(failureThreshold × periodSeconds) is shorter than the load, the kubelet kills the container.",
            fix="Measure the load time (`kubectl logs -f`) and size the startupProbe above it; "
                "'connection refused' during the first minutes is normal.",
            patterns=(r"(Startup|Liveness|Readiness) probe failed",
                      r"failed (startup|liveness) probe, will be restarted", r"KeyboardInterrupt: terminated"),
        ),
        Entry(
            "crashloop", "CrashLoopBackOff: Back-off restarting failed container", "probes",
            cause="The container keeps exiting and the kubelet waits longer and longer between restarts; "
                  "the reason is in the previous container's log, not in this event.",
            fix=f"Read `kubectl logs -n {n.namespace} deploy/{n.deployment} --previous` and "
                "`kubectl describe pod` (Last State, Exit Code), then look the message up on this page.",
            patterns=(r"Back-off restarting failed container", r"\bCrashLoopBackOff\b"),
        ),
    )


def _memory(n: SystemNames) -> tuple[Entry, ...]:
    return (
        Entry(
            "oomkilled", "OOMKilled (exit code 137): the container's memory limit", "memory",
            cause="The container's processes together used more than its memory limit; the memory-backed "
                  "/dev/shm emptyDir counts against that limit too.",
            fix="Raise resources.limits.memory, leaving room for /dev/shm's sizeLimit on top of the processes; "
                "vLLM 0.32 keeps no KV cache in host memory unless --kv-offloading-size is set.",
            patterns=(r"\bOOMKilled\b", r"exit(ed with)? code:?\s*137\b"),
        ),
        Entry(
            "kv-cache-max-model-len", "max_model_len does not fit in the KV cache", "memory",
            cause="After the weights and the profiling peak (or with --kv-cache-memory-bytes set too low), the "
                  "KV-cache memory cannot hold even one sequence of --max-model-len tokens.",
            fix="Lower --max-model-len to the length vLLM estimates (or below), or give the cache more memory "
                "(--gpu-memory-utilization); the KV-cache chapter computes both.",
            patterns=(r"larger than the maximum number of tokens that can be stored in KV cache",
                      r"To serve at least one request with the models?'s max seq len",
                      r"estimated maximum model length is"),
        ),
        Entry(
            "no-cache-blocks", "No available memory for the cache blocks", "memory",
            cause="The weights plus the profiled activation peak already use the whole --gpu-memory-utilization "
                  "budget, leaving zero bytes for the KV cache.",
            fix="Raise --gpu-memory-utilization if the GPU is otherwise free, use the quantized model, "
                "or lower --max-num-batched-tokens / --max-num-seqs to shrink the profiling peak.",
            patterns=(r"No available memory for the cache blocks",),
        ),
        Entry(
            "free-memory-startup", "Free memory on device is less than desired GPU memory utilization", "memory",
            cause="--gpu-memory-utilization is a fraction of the GPU's total memory; another process "
                  "(an old vLLM, a notebook with torch) already holds part of it.",
            fix="Find the other process with nvidia-smi and stop it, or lower --gpu-memory-utilization "
                "to fit what is free.",
            patterns=(r"Free memory on device .*is less than desired GPU memory utilization",),
        ),
        Entry(
            "cuda-oom", "CUDA out of memory", "memory",
            cause="A GPU allocation failed: during CUDA-graph capture, a profiling peak, or because another "
                  "process shares the GPU.",
            fix="Lower --gpu-memory-utilization a little, add --enforce-eager to skip CUDA graphs, "
                "or reduce --max-num-seqs; check nvidia-smi for other processes.",
            patterns=(r"CUDA out of memory", r"\bOutOfMemoryError\b"),
        ),
        Entry(
            "shm-bus-error", "Bus error or NCCL shared-memory errors with tensor parallelism", "memory",
            cause="Worker processes share tensors through /dev/shm, which is only 64 MiB in a container "
                  "unless a memory-backed emptyDir is mounted there.",
            fix="Mount an emptyDir with medium: Memory and a sizeLimit at /dev/shm (the course's Deployment "
                f"mounts {n.shm_size}) and keep the memory limit large enough to include it.",
            patterns=(r"\bBus error\b", r"ncclShmOpen", r"/dev/shm/nccl", r"shared memory segment"),
        ),
    )


def _gpu(n: SystemNames) -> tuple[Entry, ...]:
    return (
        Entry(
            "quantization-capability", "The quantization method is not supported for the current GPU", "gpu",
            cause="Each quantization method has a minimum CUDA compute capability; in vLLM 0.32 every AWQ name "
                  "(awq, awq_marlin, auto_awq) is one config whose minimum is 7.5 (Turing, such as the T4), "
                  "and it picks the Marlin kernel itself where the GPU supports it.",
            fix="Below 7.5 (a V100 is 7.0) no AWQ kernel runs: use a newer GPU, or an unquantized fp16 model "
                "that fits.",
            patterns=(r"quantization method \S+ is not supported for the current GPU",
                      r"Quantization scheme is not supported"),
        ),
        Entry(
            "bf16-capability", "Bfloat16 is only supported on GPUs with compute capability of at least 8.0", "gpu",
            cause="The model's config says bfloat16 and the GPU (V100, T4) predates Ampere.",
            fix="Pass --dtype=half (the AWQ build already runs in float16).",
            patterns=(r"Bfloat16 is only supported on GPUs with compute capability",),
        ),
        Entry(
            "device-plugin-no-gpus", "Device plugin finds no GPU: No devices found", "gpu",
            cause="The NVIDIA device plugin Pod runs with the plain runc runtime, so it cannot see the driver; "
                  "on k3s the nvidia runtime is available but not the default.",
            fix="Start k3s with --default-runtime=nvidia, or install the plugin with runtimeClassName=nvidia "
                "(and set runtimeClassName: nvidia in GPU Pods).",
            patterns=(r"No devices found\. Waiting indefinitely", r"Incompatible strategy detected"),
        ),
    )


def _model_loading(n: SystemNames) -> tuple[Entry, ...]:
    return (
        Entry(
            "model-path-wrong", "The model path is not a model directory", "model-loading",
            cause="--model points at a directory without config.json (a typo, the wrong level, an empty "
                  "volume), so vLLM tries to read it as a Hugging Face repository id.",
            fix=f"List the directory from inside the Pod (`kubectl exec … -- ls {n.model_path}`) "
                "and point --model at the folder that holds config.json.",
            patterns=(r"Invalid repository ID or local directory specified", r"Repo id must be in the form"),
        ),
        Entry(
            "max-model-len-beyond-model", "User-specified max_model_len is greater than the model's own limit",
            "model-loading",
            cause="--max-model-len is above the length the model's config.json allows (max_position_embeddings); "
                  "vLLM 0.32 refuses before it loads a single weight.",
            fix="Set --max-model-len at or below the model's max_position_embeddings; "
                "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 only silences the check and risks wrong outputs.",
            patterns=(r"User-specified max_model_len \(\d+\) is greater than the derived max_model_len",),
        ),
        Entry(
            "hf-offline", "Offline: couldn't connect to huggingface.co", "model-loading",
            cause="vLLM was asked for a Hub model id (or a local path it could not find) while the Pod has no "
                  "internet or HF_HUB_OFFLINE=1 is set, and the files are not in the cache.",
            fix="Give --model the local path of the downloaded weights; keep HF_HUB_OFFLINE=1 so a wrong "
                "path fails fast instead of trying the Hub.",
            patterns=(r"couldn'?t connect to '?https://huggingface\.co", r"\bLocalEntryNotFoundError\b",
                      r"\bOfflineModeIsEnabled\b", r"offline mode is enabled"),
        ),
        Entry(
            "vllm-port-collision", "VLLM_PORT appears to be a URI: a Service named vllm", "model-loading",
            cause="Kubernetes injects VLLM_PORT=tcp://… into every Pod of the namespace when a Service named "
                  "vllm exists, and vLLM reads VLLM_PORT as its own internal port.",
            fix=f"Do not name a Service vllm (the course's is {n.service}), or set "
                "enableServiceLinks: false in the Pod spec.",
            patterns=(r"VLLM_PORT '?tcp://", r"invalid literal for int\(\) with base 10: '?tcp://"),
        ),
    )


def _networking_and_client(n: SystemNames) -> tuple[Entry, ...]:
    port = n.service_port
    return (
        Entry(
            "port-forward-refused", "kubectl port-forward: connection refused or lost connection", "networking",
            cause="The port-forward reached the Pod but nothing listened on the port yet (vLLM still loading), "
                  "the Pod restarted, or the Pod is not running.",
            fix=f"Wait for the Pod to be Ready (`kubectl get pods -w`), check the port ({n.container_port}), and "
                "restart the port-forward after every Pod restart.",
            patterns=(r"error forwarding port \d+", r"an error occurred forwarding", r"lost connection to pod",
                      r"unable to forward port because pod is not running"),
        ),
        Entry(
            "client-connection-refused", f"Client cannot connect to localhost:{port}", "client",
            cause="Nothing listens on the local port: the port-forward is not running (or died), or the "
                  "client uses another port.",
            fix=f"Start `kubectl port-forward -n {n.namespace} svc/{n.service} {port}:{port}` in another "
                f"terminal and keep it open; point base_url at http://localhost:{port}/v1.",
            patterns=(r"Failed to connect to \S+ port \d+", r"Couldn.t connect to server", r"\bAPIConnectionError\b",
                      r"\[Errno 111\] Connection refused"),
        ),
        Entry(
            "api-key-401", "401 Unauthorized: the API key", "client",
            cause="The server was started with --api-key or VLLM_API_KEY, and the request's "
                  "'Authorization: Bearer …' header is missing or different.",
            fix=f"Read the key from the Secret {n.api_key_secret} and pass it as api_key= (OpenAI client) or "
                "-H 'Authorization: Bearer …' (curl); routes outside /v1 (/health, /metrics) need no key.",
            patterns=(r"\b401 Unauthorized\b", r"Error code: 401", r"\{[\"']error[\"']: ?[\"']Unauthorized[\"']\}"),
        ),
        Entry(
            "model-not-found-404", "404: The model does not exist", "client",
            cause="The request's model field must equal a served model name: --served-model-name if given, "
                  "otherwise the --model string.",
            fix=f"List the names with GET /v1/models and use that one ({n.served_model_name} in this course).",
            patterns=(r"The model `[^`]*` does not exist", r"\bNotFoundError\b.*\b404\b"),
        ),
    )


@functools.cache
def entries() -> tuple[Entry, ...]:
    """Every entry, in the order of the book's sections (built once, from the manifests' names)."""
    n = system()
    return (_storage(n) + _scheduling(n) + _probes(n) + _memory(n) + _gpu(n) + _model_loading(n)
            + _networking_and_client(n))


def by_slug(slug: str) -> Entry:
    """The entry with this slug (KeyError names the known slugs)."""
    known = {e.slug: e for e in entries()}
    try:
        return known[slug]
    except KeyError:
        raise KeyError(f"No troubleshooting entry {slug!r}; known: {', '.join(known)}") from None


def match(text: str) -> list[Entry]:
    """Entries whose patterns occur in ``text``, ordered by where they first occur.

    ``text`` may be one event message, a whole ``kubectl describe`` output, a
    log tail or an exception's text. Returns ``[]`` when nothing is recognised.
    """
    if not text:
        return []
    found = [(m.start(), i, e) for i, e in enumerate(entries()) if (m := e.search(text))]
    return [e for _, _, e in sorted(found, key=lambda t: (t[0], t[1]))]


def match_events(events: list[dict]) -> list[Entry]:
    """Entries recognised in Kubernetes Event objects (as ``Cluster.events`` returns them)."""
    lines = [f"{ev.get('reason', '')}: {ev.get('message', '')}" for ev in events or []]
    return match("\n".join(lines))


def advice(text: str, from_dir: str = "notebooks") -> str:
    """A short, readable note for a notebook: each entry recognised in ``text``, its fix and its link."""
    found = match(text)
    if not found:
        return "No known failure recognised in this text; see the troubleshooting chapter for the full list."
    return "\n".join(f"- {e.title}: {e.fix} (see {e.link(from_dir)})" for e in found)
