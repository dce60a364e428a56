"""The storage chapter's live side: the course's objects, the learner's files, the cluster and /models.

Live module of the storage chapter (``book/storage.md``, ``notebooks/storage-lab.ipynb``):

* read the course's Namespace, PersistentVolume and claim from ``manifests/base``, an
  example from ``manifests/examples/storage``, or what a learner typed (:func:`read_object`);
* on a cluster, through :class:`llmserve.world.cluster.Cluster` only: read the default
  StorageClass, apply the three objects, wait for the claim to bind (through
  :func:`llmserve.core.waiting.wait_until`), read its events, make a Released volume
  Available again, delete the claim but keep the volume;
* list a model folder on disk (on the node) and check it;
* say each of those actions as the ``kubectl`` command that does it by hand (:func:`by_hand`).

Every failure is a :class:`~llmserve.core.errors.CourseError` that names the fix.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from llmserve.core import manifest_files
from llmserve.core.errors import ClusterError, InputError, ManifestError
from llmserve.core.findings import Report
from llmserve.core.names import base_objects, system
from llmserve.core.paths import REPO_ROOT
from llmserve.core.waiting import wait_until
from llmserve.storage import checks, rules
from llmserve.world.cluster import ObjectRef

#: The objects the storage chapter applies, in the order they must exist.
STORAGE_KINDS = ("Namespace", "PersistentVolume", "PersistentVolumeClaim")
#: Where the chapter's deliberately broken examples live (under manifests/).
EXAMPLES_DIR = "examples/storage"


# ---------------------------------------------------------------------------
# The course's objects, the examples, what the learner typed
# ---------------------------------------------------------------------------
def base_object(kind: str) -> dict:
    """The one object of ``kind`` in ``manifests/base`` (the Deployment, the claim, …)."""
    found = [o for o in base_objects() if o.get("kind") == kind]
    if len(found) != 1:
        raise ManifestError(f"manifests/base holds {len(found)} objects of kind {kind}, expected one.",
                            f"Keep exactly one {kind} in manifests/base.")
    return found[0]


def course_volume() -> dict:
    """The course's PersistentVolume, as ``manifests/base`` defines it."""
    return base_object("PersistentVolume")


def course_claim() -> dict:
    """The course's PersistentVolumeClaim, as ``manifests/base`` defines it."""
    return base_object("PersistentVolumeClaim")


def course_objects() -> list[dict]:
    """The Namespace, the PersistentVolume and the claim, in the order they are applied."""
    return [base_object(kind) for kind in STORAGE_KINDS]


def base_file(kind: str) -> str:
    """The file (relative to the repository) that holds the base object of ``kind``, as ``kubectl -f`` takes it."""
    for p in sorted(manifest_files.path("base").glob("*.yaml")):
        if p.name != "kustomization.yaml" and any(o.get("kind") == kind for o in manifest_files.load(p)):
            return p.relative_to(REPO_ROOT).as_posix()
    raise ManifestError(f"No file in manifests/base holds a {kind}.", f"Add the {kind} back to manifests/base.")


def example(name: str) -> dict:
    """One object of ``manifests/examples/storage/<name>.yaml`` (e.g. ``claim-without-class``)."""
    return manifest_files.load_one(f"{EXAMPLES_DIR}/{name}.yaml")


def example_text(name: str) -> str:
    """The text of ``manifests/examples/storage/<name>.yaml``, comments included (for the claim checker)."""
    p = manifest_files.path(f"{EXAMPLES_DIR}/{name}.yaml")
    if not p.is_file():
        raise ManifestError(f"No example {name!r} in manifests/{EXAMPLES_DIR}.",
                            f"Pick one of: {', '.join(sorted(f.stem for f in p.parent.glob('*.yaml')))}.")
    return p.read_text(encoding="utf-8")


def _pick(objs: list[dict], kind: str, source: str) -> dict:
    mine = [o for o in objs if o.get("kind") == kind]
    if len(mine) == 1:
        return mine[0]
    if not mine:
        kinds = ", ".join(str(o.get("kind")) for o in objs)
        raise ManifestError(f"{source} holds no {kind} (it holds: {kinds}).", f"Pass a file or text with a {kind}.")
    raise ManifestError(f"{source} holds {len(mine)} {kind} objects.", f"Pass one {kind} at a time.")


def read_object(src, kind: str) -> dict:
    """A dict, a path (under manifests/ or absolute) or YAML text → the one object of ``kind`` in it."""
    if isinstance(src, dict):
        obj = src
    elif isinstance(src, Path) or (isinstance(src, str) and "\n" not in src.strip()
                                   and src.strip().endswith((".yaml", ".yml"))):
        obj = _pick(manifest_files.load(src), kind, str(src))
    elif isinstance(src, str):
        obj = _pick(manifest_files.load_text(src, source="the YAML text"), kind, "the YAML text")
    else:
        raise InputError(f"Cannot check a {type(src).__name__}.",
                         f"Pass the {kind} as a dict, a path to a .yaml file, or YAML text.")
    if obj.get("kind") != kind:
        raise ManifestError(f"Expected a {kind}, got a {obj.get('kind')} ({rules.qualified_name(obj)}).",
                            f"Pass the {kind} manifest here.")
    return obj


# ---------------------------------------------------------------------------
# The same actions by hand
# ---------------------------------------------------------------------------
def _release_patch_text() -> str:
    # The patch for a volume as a deleted claim leaves it: both stale keys present.
    released = {"spec": {"claimRef": dict.fromkeys(rules.STALE_CLAIM_REF_KEYS, "stale")}}
    return json.dumps(rules.reuse_patch(released))


def by_hand(step: str) -> str:
    """The ``kubectl`` command that does ``step`` by hand (the steps the lab's live cells take).

    Steps: ``default-class``, ``apply``, ``get``, ``watch``, ``describe``, ``release``, ``delete``.
    """
    names = system()
    claim = f"pvc {names.pvc} -n {names.namespace}"
    commands = {
        "default-class": "kubectl get storageclass",
        "apply": "kubectl apply " + " ".join(f"-f {base_file(k)}" for k in STORAGE_KINDS),
        "get": f"kubectl get pv/{names.pv} pvc/{names.pvc} -n {names.namespace}",   # by name: what the lab reads
        "watch": f"kubectl get {claim} --watch",
        "describe": f"kubectl describe {claim}",
        "release": f"kubectl patch pv {names.pv} --type json -p '{_release_patch_text()}'",
        "delete": f"kubectl delete {claim}",
    }
    if step not in commands:
        raise InputError(f"No by-hand command for {step!r}.", f"Ask for one of: {', '.join(commands)}.")
    return commands[step]


# ---------------------------------------------------------------------------
# On a cluster (a llmserve.world.cluster.Cluster)
# ---------------------------------------------------------------------------
def volume_ref() -> ObjectRef:
    return ObjectRef.of(course_volume())


def claim_ref() -> ObjectRef:
    return ObjectRef.of(course_claim())


def default_class(cluster) -> str | None:
    """The cluster's default StorageClass: the class a claim without ``storageClassName`` gets."""
    return rules.default_storage_class(cluster.list("storage.k8s.io/v1", "StorageClass"))


def make_available(cluster) -> list[dict]:
    """If the course's volume is Released, remove the old claim's uid so it can bind again.

    Returns the JSON patch applied (empty when none was needed). The data on the
    volume is never touched; the reservation by name and namespace stays.
    """
    ref = volume_ref()
    pv = cluster.get(ref)
    if ((pv or {}).get("status") or {}).get("phase") != "Released":
        return []
    patch = rules.reuse_patch(pv)
    if patch:
        cluster.call(f"make {ref} Available again", cluster.core.patch_persistent_volume, ref.name, patch,
                     _content_type="application/json-patch+json")
    return patch


def apply_storage(cluster) -> list[str]:
    """Apply the Namespace, the volume and the claim (server-side apply: re-running is safe).

    A Released volume (its old claim deleted) is made Available first. Returns one
    line per thing done.
    """
    lines = []
    if make_available(cluster):
        lines.append(f"{volume_ref().name} was Released: removed the old claim's uid from its claimRef")
    lines += [f"applied {ref}" for ref in cluster.apply(course_objects())]
    return lines


# What a wait on the claim or the volume waits for: (done, status) from the object (None: absent).
def claim_phase(obj: dict | None) -> tuple[bool, str]:
    """``(done, status)`` for a wait: done when the claim is Bound; Lost raises (waiting cannot help)."""
    if obj is None:
        return False, "the claim does not exist yet"
    status = obj.get("status") or {}
    phase = status.get("phase") or "Pending"
    spec = obj.get("spec") or {}
    if phase == "Bound":
        cap = (status.get("capacity") or {}).get("storage", "?")
        modes = ",".join(status.get("accessModes") or [])
        return True, f"Bound to {spec.get('volumeName')} ({cap}, {modes})"
    if phase == "Lost":
        raise ClusterError(f"Claim {rules.qualified_name(obj)} is Lost: its volume {spec.get('volumeName')} was deleted "
                           "or re-bound. The weights on the node are untouched (hostPath, Retain).",
                           "Re-create the PersistentVolume from its file in manifests/base, then the claim.")
    hint = ""
    if spec.get("storageClassName") not in ("", None):
        hint = f" (class '{spec['storageClassName']}': check `kubectl get pv` and the events)"
    return False, f"Pending{hint}"


def volume_phase(obj: dict | None) -> tuple[bool, str]:
    """``(done, status)`` for a wait on the PV: done when Bound."""
    if obj is None:
        return False, "the volume does not exist yet"
    phase = (obj.get("status") or {}).get("phase") or "Pending"
    ref = (obj.get("spec") or {}).get("claimRef") or {}
    return phase == "Bound", f"{phase}" + (f" (claimRef {ref.get('namespace')}/{ref.get('name')})" if ref else "")


def volume_phase_in(*phases: str):
    """A ``(done, status)`` condition: done when the PV's phase is one of ``phases``."""
    def condition(obj: dict | None) -> tuple[bool, str]:
        if obj is None:
            return False, "the volume does not exist"
        phase = (obj.get("status") or {}).get("phase") or "Pending"
        return phase in phases, phase
    return condition


def _wait_for(cluster, ref: ObjectRef, condition: Callable[[dict | None], tuple[bool, str]], timeout_s: float,
              interval_s: float, progress: Callable[[float, str], None] | None) -> dict:
    """Poll ``ref`` until ``condition`` holds; ``progress`` hears each change of status."""
    seen: dict = {"obj": None, "status": None}

    def look() -> tuple[bool, str]:
        seen["obj"] = cluster.get(ref)
        return condition(seen["obj"])

    def report(elapsed: float, status: str) -> None:
        if progress and status != seen["status"]:
            progress(elapsed, status)
        seen["status"] = status

    def timed_out(status: str, elapsed: float) -> ClusterError:
        recent = "; ".join(f"{e.get('reason')}: {e.get('message')}" for e in cluster.events(ref)[-3:])
        return ClusterError(f"{ref} was not ready after {timeout_s:.0f} s (last status: {status}). "
                            f"Recent events: {recent or 'none'}",
                            "See the storage chapter's table of binding rules for this status, or "
                            f"`kubectl describe {ref.kind.lower()} {ref.name}`.")

    wait_until(look, timeout_s=timeout_s, interval_s=interval_s, progress=report, on_timeout=timed_out)
    return seen["obj"]


def wait_for_claim(cluster, timeout_s: float = 60.0, interval_s: float = 2.0,
                   progress: Callable[[float, str], None] | None = None) -> dict:
    """Poll the course's claim until it is Bound; return it. ``progress(elapsed_s, status)`` hears each change.

    Raises :class:`ClusterError` on timeout (with the claim's recent events) or when the claim is Lost.
    """
    return _wait_for(cluster, claim_ref(), claim_phase, timeout_s, interval_s, progress)


def format_events(events: list[dict]) -> str:
    """Events as ``kubectl describe`` shows them at the end: type, reason, message."""
    if not events:
        return "No events (a claim that binds at once may have none)."
    lines = []
    for e in events:
        count = e.get("count") or 1
        lines.append(f"{e.get('type', ''):8} {e.get('reason', ''):22} "
                     f"{e.get('message', '')}" + (f" (x{count})" if count > 1 else ""))
    return "\n".join(lines)


def claim_events(cluster) -> str:
    """The course claim's events, oldest first (what ``kubectl describe pvc`` lists at the end)."""
    return format_events(cluster.events(claim_ref()))


def delete_claim_keep_volume(cluster, timeout_s: float = 60.0, interval_s: float = 2.0) -> list[str]:
    """Delete the claim this session applied, keep the volume (and every file under it), make it Available.

    Does nothing while a Pod mounts the claim (deleting it would wait for the Pod anyway).
    Returns one line per thing done.
    """
    names = system()
    users = rules.pods_using_claim(cluster.list("v1", "Pod", namespace=names.namespace), names.pvc)
    if users:
        return [f"kept the claim: Pods {', '.join(users)} mount it (delete their Deployment first)"]
    lines = list(cluster.cleanup())
    released = _wait_for(cluster, volume_ref(), volume_phase_in("Released", "Available"),
                         timeout_s, interval_s, None)
    lines.append(f"after deleting the claim, {names.pv} is {released['status']['phase']}")
    if make_available(cluster):
        lines.append(f"removed the old claim's uid from the claimRef of {names.pv}")
    after = _wait_for(cluster, volume_ref(), volume_phase_in("Available", "Bound"), timeout_s, interval_s, None)
    lines.append(f"{names.pv} is {after['status']['phase']}")
    return lines


# ---------------------------------------------------------------------------
# The model folder on disk (run on the node, or on any copy of /models)
# ---------------------------------------------------------------------------
def list_model_dir(root: str | Path | None = None) -> list[str]:
    """Every file under ``root`` (the node's ``/models`` by default), relative to it, sorted.

    The same listing as ``cd /models && find . -type f`` (symlinks to files count as
    files, as a hub cache's snapshots are).
    """
    root = Path(root if root is not None else system().pv_host_path)
    if not root.is_dir():
        raise InputError(f"{root} is not a directory on this machine.",
                         "Run this on the node that holds the weights, or pass the folder that holds a copy.")
    found = []
    for here, _dirs, files in os.walk(root):
        found += [(Path(here) / f).relative_to(root).as_posix() for f in files]
    return sorted(found)


def inspect_model_folder(root: str | Path | None = None, model_dir: str | None = None) -> Report:
    """List ``root`` and say whether vLLM can load the model folder in it (:func:`checks.check_model_dir`)."""
    return checks.check_model_dir(list_model_dir(root), model_dir)
