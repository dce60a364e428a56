"""The system's names and numbers, read once from ``manifests/base``.

Used by every chapter and helper that needs the namespace, the Service, the
Deployment, the claim or a number the manifests set (the figure in the opening
chapter prints them; the box check and the stack helpers act on them). Nothing
else in the package spells them: change the manifest and everything follows.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import yaml

from llmserve.core import manifest_files, vllm
from llmserve.core.errors import ManifestError
from llmserve.core.objects import arg_value


@dataclass(frozen=True)
class SystemNames:
    """Every name and number the figure prints, as the manifests say them."""

    namespace: str
    pv: str
    pv_host_path: str
    pv_capacity: str
    pv_access_modes: tuple[str, ...]
    pv_reclaim: str
    pvc: str
    pvc_access_modes: tuple[str, ...]
    pvc_request: str
    pvc_volume_name: str
    deployment: str
    replicas: int
    strategy: str
    container: str
    image: str
    model_path: str
    served_model_name: str
    gpu_memory_utilization: float
    container_port: int
    port_name: str
    gpus: str
    models_mount_path: str
    models_read_only: bool
    shm_size: str
    api_key_secret: str
    run_as_user: int | None         # the Pod's (or container's) securityContext: who must read the weights
    run_as_group: int | None
    memory_request: str
    memory_limit: str
    cpu_request: str
    service: str
    service_type: str
    service_port: int
    target_port: str

    @property
    def dns_name(self) -> str:
        """The Service's DNS name: ``<service>.<namespace>.svc.<cluster domain>``."""
        return f"{self.service}.{self.namespace}.svc.{vllm.CLUSTER_DOMAIN}"

    @property
    def host_model_dir(self) -> str:
        """Where the weights lie on the node: hostPath + the model path below the mount."""
        rel = Path(self.model_path).relative_to(self.models_mount_path)
        return str(Path(self.pv_host_path) / rel)


def _one(objs: list[dict], kind: str) -> dict:
    found = [o for o in objs if o.get("kind") == kind]
    if len(found) != 1:
        raise ManifestError(f"The course needs exactly one {kind} in manifests/base, found {len(found)}.",
                            "Keep one object per kind in manifests/base (the chapters and helpers read their names from there).")
    return found[0]


def names_from_manifests(objs: list[dict]) -> SystemNames:
    """Read the names the figure prints from the course's objects (a list of manifest dicts)."""
    ns = _one(objs, "Namespace")
    pv = _one(objs, "PersistentVolume")
    pvc = _one(objs, "PersistentVolumeClaim")
    dep = _one(objs, "Deployment")
    svc = _one(objs, "Service")

    pod = dep["spec"]["template"]["spec"]
    containers = pod.get("containers") or []
    engine = next((c for c in containers if "vllm" in c.get("image", "")), None)
    if engine is None:
        raise ManifestError("The Deployment has no container running a vLLM image.",
                            "Keep the vllm/vllm-openai container in manifests/base/vllm-deployment.yaml.")
    model = arg_value(engine, "--model")
    if model is None:
        raise ManifestError("The vLLM container's args have no --model.",
                            "Pass --model=/models/<model directory> in the Deployment's args.")

    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    claim_volume = next((name for name, v in volumes.items()
                         if (v.get("persistentVolumeClaim") or {}).get("claimName") == pvc["metadata"]["name"]), None)
    mount = next((m for m in engine.get("volumeMounts") or [] if m.get("name") == claim_volume), None)
    if mount is None:
        raise ManifestError(f"No volumeMount of the claim {pvc['metadata']['name']} in the vLLM container.",
                            "Mount the model volume at /models (readOnly: true) in the Deployment.")
    shm = next((volumes[m["name"]] for m in engine.get("volumeMounts") or []
                if m.get("mountPath") == "/dev/shm" and m["name"] in volumes), {})

    key_env = next((e for e in engine.get("env") or [] if e.get("name") == "VLLM_API_KEY"), {})
    port = (engine.get("ports") or [{}])[0]
    svc_port = (svc["spec"].get("ports") or [{}])[0]
    limits = (engine.get("resources") or {}).get("limits") or {}
    requests = (engine.get("resources") or {}).get("requests") or {}
    # A container's securityContext wins over the Pod's (the kubelet's rule).
    security = {**(pod.get("securityContext") or {}), **(engine.get("securityContext") or {})}
    util = arg_value(engine, "--gpu-memory-utilization")
    return SystemNames(
        namespace=ns["metadata"]["name"],
        pv=pv["metadata"]["name"],
        pv_host_path=pv["spec"]["hostPath"]["path"],
        pv_capacity=str(pv["spec"]["capacity"]["storage"]),
        pv_access_modes=tuple(pv["spec"].get("accessModes") or ()),
        pv_reclaim=pv["spec"].get("persistentVolumeReclaimPolicy", "Retain"),
        pvc=pvc["metadata"]["name"],
        pvc_access_modes=tuple(pvc["spec"].get("accessModes") or ()),
        pvc_request=str(pvc["spec"]["resources"]["requests"]["storage"]),
        pvc_volume_name=pvc["spec"].get("volumeName", ""),
        deployment=dep["metadata"]["name"],
        replicas=int(dep["spec"].get("replicas", 1)),
        strategy=(dep["spec"].get("strategy") or {}).get("type", "RollingUpdate"),
        container=engine["name"],
        image=engine["image"],
        model_path=model,
        served_model_name=arg_value(engine, "--served-model-name") or model,
        gpu_memory_utilization=float(util) if util is not None else vllm.DEFAULT_GPU_MEMORY_UTILIZATION,
        container_port=int(port.get("containerPort", 8000)),
        port_name=str(port.get("name", "")),
        gpus=str(limits.get("nvidia.com/gpu", "0")),
        models_mount_path=mount["mountPath"],
        models_read_only=bool(mount.get("readOnly", False)),
        shm_size=str((shm.get("emptyDir") or {}).get("sizeLimit", "")),
        api_key_secret=str(((key_env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name", "")),
        run_as_user=security.get("runAsUser"),
        run_as_group=security.get("runAsGroup"),
        memory_request=str(requests.get("memory", "")),
        memory_limit=str(limits.get("memory", "")),
        cpu_request=str(requests.get("cpu", "")),
        service=svc["metadata"]["name"],
        service_type=svc["spec"].get("type", "ClusterIP"),
        service_port=int(svc_port.get("port", 0)),
        target_port=str(svc_port.get("targetPort", svc_port.get("port", ""))),
    )


def base_objects() -> list[dict]:
    """Every object of ``manifests/base``, in the order its kustomization lists the files."""
    kustomization = yaml.safe_load(manifest_files.path("base/kustomization.yaml").read_text(encoding="utf-8"))
    return [o for rel in kustomization.get("resources", []) for o in manifest_files.load(f"base/{rel}")]


@functools.cache
def system() -> SystemNames:
    """The system's names, read once from the files of ``manifests/base``."""
    return names_from_manifests(base_objects())
