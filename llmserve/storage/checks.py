"""The learner's checkers: is this claim, volume, mount or model folder right for the weights?

Pure rules of the storage chapter (``book/storage.md``, ``notebooks/storage-lab.ipynb``,
the claim checker panel). Each checker takes plain dicts (or a file listing) and returns a
:class:`~llmserve.core.findings.Report` whose findings name the fix. Reading a file, a path
or YAML text belongs to the caller (:func:`llmserve.storage.live.read_object`).

The names the checks expect (namespace, claim, volume, mount path, model folder) come from
``manifests/base`` through :func:`llmserve.core.names.system`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Iterable

from llmserve.core.errors import ManifestError
from llmserve.core.findings import ERROR, OK, WARNING, Finding, Report
from llmserve.core.names import system
from llmserve.storage import rules

#: The Hugging Face repository the course serves (https://huggingface.co/Qwen/Qwen2.5-Coder-7B-Instruct-AWQ).
HUB_REPO = "Qwen/Qwen2.5-Coder-7B-Instruct-AWQ"
#: The kinds whose Pod template ``check_mount`` reads.
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")


@dataclass(frozen=True)
class ClaimReport(Report):
    """A claim's report, with the binding verdict it was judged by."""

    verdict: rules.Verdict | None = None


def _has_errors(findings: list[Finding]) -> bool:
    return any(f.level == ERROR for f in findings)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    """Drop findings that say the same thing twice (the claim and the pair often agree)."""
    seen, out = set(), []
    for f in findings:
        if f.what not in seen:
            seen.add(f.what)
            out.append(f)
    return out


def model_dir_name() -> str:
    """The model folder under the mount (``qwen25-coder-7b-awq``), from the Deployment's ``--model``."""
    names = system()
    return str(PurePosixPath(names.model_path).relative_to(names.models_mount_path))


# ---------------------------------------------------------------------------
# Claim and volume
# ---------------------------------------------------------------------------
def _claim_findings(pvc: dict, namespace: str | None) -> list[Finding]:
    names = system()
    out: list[Finding] = []
    spec = rules.spec_of(pvc, "PersistentVolumeClaim")
    rules.claim_request(pvc)  # raises for bad sizes
    modes = rules.access_modes(pvc, "PersistentVolumeClaim")
    ns = (pvc.get("metadata") or {}).get("namespace")
    if namespace and not ns:
        out.append(Finding(WARNING, "the claim has no metadata.namespace: it lands in your kubectl context's "
                           "namespace (often 'default'), where the vLLM Pod cannot use it",
                           f"add namespace: {namespace} (claims are namespaced; the Pod and its claim must share one)"))
    elif namespace and ns != namespace:
        out.append(Finding(ERROR, f"the claim is in namespace '{ns}', the vLLM Pod runs in '{namespace}'",
                           f"set metadata.namespace: {namespace}"))
    cls = rules.claim_class(pvc)
    if cls is None:
        out.append(Finding(ERROR, "no storageClassName: the DefaultStorageClass admission plugin fills in the "
                           "cluster's default class; unless the claim is pre-bound, that class's provisioner makes "
                           "a new EMPTY volume (or refuses, leaving the claim Pending) instead of binding the "
                           "pre-made one with the weights",
                           'set storageClassName: "" (an explicit empty string) on the claim and on the volume'))
    elif cls:
        out.append(Finding(WARNING, f"storageClassName '{cls}': the claim binds only to volumes of "
                           "that class, or is given a new volume by that class's provisioner",
                           'for the pre-made weights volume use storageClassName: ""'))
    if not spec.get("volumeName"):
        out.append(Finding(WARNING, "no volumeName: the claim takes any matching free volume, not necessarily "
                           "the one with the weights", f"pin it: volumeName: {names.pv}"))
    writes = [m for m in modes if m != "ReadOnlyMany"]
    if writes:
        out.append(Finding(WARNING, f"access mode {', '.join(writes)}: serving only reads the weights",
                           "ask for ReadOnlyMany (and mount the volume with readOnly: true in the Pod)"))
    if spec.get("selector") and spec.get("volumeName"):
        out.append(Finding(WARNING, "the selector is ignored when volumeName is set", "drop one of the two"))
    return out


def _reclaim_findings(policy: str) -> list[Finding]:
    if policy == "Recycle":
        return [Finding(ERROR, "persistentVolumeReclaimPolicy: Recycle runs `rm -rf /thevolume/*` when the "
                        "claim is deleted: the weights would be scrubbed", "set persistentVolumeReclaimPolicy: Retain")]
    if policy == "Delete":
        return [Finding(ERROR, "persistentVolumeReclaimPolicy: Delete asks the volume plugin to delete the "
                        "storage when the claim is deleted (the hostPath plugin refuses paths outside /tmp and "
                        "leaves the volume Failed; other plugins delete the data)",
                        "set persistentVolumeReclaimPolicy: Retain (the weights must outlive any claim)")]
    return []


def _host_path_findings(spec: dict, modes: list[str]) -> list[Finding]:
    out: list[Finding] = []
    host = spec["hostPath"]
    if any(m != "ReadWriteOnce" for m in modes):
        out.append(Finding(WARNING, f"hostPath volume listing {', '.join(modes)}: the docs' table lists only "
                           "ReadWriteOnce for hostPath, and ReadOnlyMany is never enforced: listing it only lets a "
                           "ReadOnlyMany claim match; it does not make the data read-only",
                           "mount it with readOnly: true in the Pod (check_mount checks that)"))
    htype = host.get("type") or ""
    if htype in ("DirectoryOrCreate", ""):
        out.append(Finding(WARNING, f"hostPath type {htype or '(unset)'}: a missing {host.get('path')} is "
                           + ("created empty" if htype else "not checked") + " instead of failing the mount",
                           "set hostPath.type: Directory so a missing weights directory fails loudly"))
    if not spec.get("nodeAffinity"):
        out.append(Finding(WARNING, "hostPath without nodeAffinity: on a cluster of more than one node the "
                           f"Pod may land on a node whose {host.get('path')} is empty",
                           "single node: fine. More nodes: use a `local` volume with nodeAffinity "
                           "(manifests/examples/storage/local-pv.yaml) or network storage"))
    return out


def _volume_findings(pv: dict) -> list[Finding]:
    names = system()
    spec = rules.spec_of(pv, "PersistentVolume")
    rules.volume_capacity(pv)  # raises for bad sizes
    modes = rules.access_modes(pv, "PersistentVolume")
    out = _reclaim_findings(spec.get("persistentVolumeReclaimPolicy") or "Retain")
    if rules.volume_class(pv):
        out.append(Finding(WARNING, f"the volume has class '{rules.volume_class(pv)}': only claims asking for that "
                           "class can bind", 'use storageClassName: "" on both for a hand-made volume'))
    if not spec.get("claimRef"):
        out.append(Finding(WARNING, "no claimRef: any matching claim in any namespace can take this volume first",
                           f"reserve it: claimRef: {{namespace: {names.namespace}, name: {names.pvc}}}"))
    elif not spec["claimRef"].get("namespace"):
        out.append(Finding(ERROR, "claimRef has no namespace: claims are namespaced, so it matches no claim",
                           f"add claimRef.namespace: {names.namespace}"))
    if spec.get("hostPath") is not None:
        out += _host_path_findings(spec, modes)
    return out


def check_claim(pvc: dict, pv: dict, default_storage_class: str | None = "standard",
                namespace: str | None = None) -> ClaimReport:
    """Check a claim on its own and against a volume; ``namespace`` defaults to the course's."""
    namespace = system().namespace if namespace is None else namespace
    findings = _claim_findings(pvc, namespace)
    verdict = rules.binding_verdict(pv, pvc, default_storage_class)
    vname = (pv.get("metadata") or {}).get("name")
    if verdict.binds:
        findings.insert(0, Finding(OK, f"binds to volume {vname} ({verdict.path})"))
    else:
        findings.insert(0, Finding(ERROR, f"does not bind to volume {vname}: "
                                   f"{rules.OUTCOME_WORDS[verdict.outcome]} ({verdict.path})", "see the reasons below"))
        findings[1:1] = [Finding(ERROR, r) for r in verdict.reasons if not r.startswith("no storageClassName")]
    # The claim-only findings above already say these in their own words.
    covered = ("no storageClassName", "the claim does not name the volume", "the selector is ignored")
    findings += [Finding(WARNING, w) for w in verdict.warnings if not w.startswith(covered)]
    return ClaimReport(f"Claim {rules.qualified_name(pvc)}", tuple(_dedupe(findings)), verdict=verdict)


def check_volume(pv: dict) -> Report:
    """Check a PersistentVolume meant to hold the weights (reclaim policy, class, claimRef, hostPath)."""
    findings = _volume_findings(pv)
    if not _has_errors(findings):
        findings.insert(0, Finding(OK, "keeps the weights when the claim is deleted and binds only as intended"))
    return Report(f"Volume {rules.qualified_name(pv)}", tuple(findings))


def check_pair(pv: dict, pvc: dict, default_storage_class: str | None = "standard",
               namespace: str | None = None) -> ClaimReport:
    """Check a volume and a claim together: each on its own, then whether they bind."""
    claim = check_claim(pvc, pv, default_storage_class, namespace)
    vol = check_volume(pv)
    return ClaimReport(f"{vol.subject} + {claim.subject}", tuple(_dedupe(list(claim.findings + vol.findings))),
                       verdict=claim.verdict)


# ---------------------------------------------------------------------------
# The Pod's mount of the claim
# ---------------------------------------------------------------------------
def _pod_spec(obj: dict) -> dict:
    kind = obj.get("kind")
    if kind == "Pod":
        spec = obj.get("spec")
    elif kind in WORKLOAD_KINDS:
        spec = ((obj.get("spec") or {}).get("template") or {}).get("spec")
    else:
        raise ManifestError(f"{kind} {rules.qualified_name(obj)} has no Pod template.",
                            "Pass a Pod or a workload with spec.template (Deployment, StatefulSet…).")
    if not isinstance(spec, dict):
        raise ManifestError(f"{kind} {rules.qualified_name(obj)} has no Pod spec.",
                            "Add the Pod spec (containers, volumes).")
    return spec


def _model_arg(container: dict) -> str | None:
    """The value of ``--model`` in a container's command and args (None when absent)."""
    args = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    for i, a in enumerate(args):
        if a.startswith("--model="):
            return a.split("=", 1)[1]
        if a == "--model" and i + 1 < len(args):
            return args[i + 1]
    return None


def _mount_findings(vol: dict, mounts: list[tuple[str, dict]], claim_name: str, mount_path: str) -> list[Finding]:
    out: list[Finding] = []
    pvc_ro = bool(vol["persistentVolumeClaim"].get("readOnly"))
    for cname, m in mounts:
        if not m.get("readOnly") and not pvc_ro:
            out.append(Finding(ERROR, f"container {cname} mounts {m.get('mountPath')} read-WRITE: "
                               "ReadOnlyMany on the claim does not stop writes (it is not enforced)",
                               "add readOnly: true to this volumeMount"))
        elif not m.get("readOnly"):
            out.append(Finding(WARNING, f"container {cname}: the volumeMount lacks readOnly: true "
                               "(the claim's readOnly covers it, but say it where readers look)",
                               "add readOnly: true to the volumeMount"))
        else:
            out.append(Finding(OK, f"container {cname} mounts {claim_name} read-only at {m.get('mountPath')}"))
        if m.get("mountPath") != mount_path:
            out.append(Finding(WARNING, f"container {cname} mounts it at {m.get('mountPath')}, not {mount_path}",
                               "make --model point inside the mountPath"))
    return out


def _model_findings(spec: dict, mounts: list[tuple[str, dict]], model_dir: str, mount_path: str) -> list[Finding]:
    out: list[Finding] = []
    for c in spec.get("containers") or []:
        model = _model_arg(c)
        if model is None:
            continue
        paths = [m.get("mountPath") for cname, m in mounts if cname == c.get("name")]
        if model.startswith("/") and not any(model == p or model.startswith(p.rstrip("/") + "/") for p in paths):
            out.append(Finding(ERROR, f"container {c.get('name')}: --model {model} is not inside any "
                               f"mount of the claim ({', '.join(paths) or 'none'})",
                               "point --model at a directory under the mountPath"))
        elif not model.startswith("/"):
            out.append(Finding(WARNING, f"container {c.get('name')}: --model {model} is a hub name, "
                               "so vLLM downloads it instead of reading the volume",
                               f"use the local path, e.g. --model={mount_path.rstrip('/')}/{model_dir}"))
    return out


def check_mount(workload: dict, claim_name: str | None = None, mount_path: str | None = None) -> Report:
    """Check that a Pod (or workload) mounts the weights claim read-only where ``--model`` looks for them."""
    names = system()
    claim_name = claim_name or names.pvc
    mount_path = mount_path or names.models_mount_path
    spec = _pod_spec(workload)
    subject = f"{workload.get('kind')} {rules.qualified_name(workload)}"
    vols = [v for v in spec.get("volumes") or []
            if (v.get("persistentVolumeClaim") or {}).get("claimName") == claim_name]
    if not vols:
        return Report(subject, (Finding(ERROR, f"no volume uses the claim {claim_name}",
                                        f"add volumes: [{{name: models, persistentVolumeClaim: "
                                        f"{{claimName: {claim_name}, readOnly: true}}}}]"),))
    vol = vols[0]
    findings: list[Finding] = []
    if not vol["persistentVolumeClaim"].get("readOnly"):
        findings.append(Finding(WARNING, f"volume '{vol['name']}': persistentVolumeClaim.readOnly is not set",
                                "add readOnly: true there too (it forces every mount of it read-only)"))
    mounts = [(c.get("name"), m) for c in spec.get("containers") or [] for m in c.get("volumeMounts") or []
              if m.get("name") == vol["name"]]
    if not mounts:
        findings.append(Finding(ERROR, f"no container mounts volume '{vol['name']}'",
                                f"add volumeMounts: [{{name: {vol['name']}, mountPath: {mount_path}, readOnly: true}}]"))
    findings += _mount_findings(vol, mounts, claim_name, mount_path)
    findings += _model_findings(spec, mounts, model_dir_name(), mount_path)
    return Report(subject, tuple(findings))


# ---------------------------------------------------------------------------
# What lies in the model folder
# ---------------------------------------------------------------------------
_HUB_CACHE = re.compile(r"(?:^|/)models--([^/]+)--([^/]+)/snapshots/([0-9a-f]{7,64})(?:/|$)")


def _layout_findings(names: set[str], inside: list[str]) -> list[Finding]:
    out: list[Finding] = []
    if "config.json" not in names:
        out.append(Finding(ERROR, "no config.json at the top of the directory",
                           "the directory must be the model itself, not a parent of it"))
    weights = [n for n in names if n.endswith(".safetensors")]
    if not weights:
        bins = [n for n in names if n.endswith(".bin")]
        out.append(Finding(WARNING if bins else ERROR,
                           "no *.safetensors weights" + (" (only .bin: slower to load, pickle-based)" if bins else ""),
                           "download the safetensors files of the repository"))
    if not names & {"tokenizer.json", "tokenizer.model", "vocab.json"}:
        out.append(Finding(ERROR, "no tokenizer files (tokenizer.json / vocab.json + merges.txt)",
                           "download the whole repository, not only the weights"))
    if len(weights) > 1 and "model.safetensors.index.json" not in names:
        out.append(Finding(WARNING, "several safetensors shards but no model.safetensors.index.json",
                           "download the index file too"))
    if any(_HUB_CACHE.search(p) for p in inside):
        out.append(Finding(WARNING, "a hub cache (models--…/snapshots/…) inside the model directory",
                           "use --local-dir so the files lie directly in the directory"))
    if not _has_errors(out):
        out.insert(0, Finding(OK, f"a plain model directory: config.json, tokenizer, {len(weights)} "
                              f"safetensors file{'s' * (len(weights) != 1)}"))
    return out


def check_model_dir(paths: Iterable[str], model_dir: str | None = None) -> Report:
    """Is this listing (paths relative to the mount, e.g. from ``find . -type f``) a folder vLLM can load?

    vLLM's ``--model /models/<dir>`` wants a plain Hugging Face model directory:
    ``config.json``, the tokenizer files and ``*.safetensors`` weights side by side —
    what ``hf download REPO --local-dir /models/<dir>`` writes. A hub cache
    (``models--Org--Name/snapshots/<hash>/``) works only if ``--model`` points at
    the snapshot directory.
    """
    mount = system().models_mount_path.strip("/")
    model_dir = model_dir or model_dir_name()
    rel = [p.strip().lstrip("./") for p in paths if p and p.strip()]
    rel = [p[len(mount) + 1:] if p.startswith(mount + "/") else p for p in rel]
    subject = f"/{mount}/{model_dir}"
    inside = [p[len(model_dir) + 1:] for p in rel if p.startswith(model_dir + "/")]
    if not inside:
        hub = sorted({m.group(0).strip("/") for p in rel if (m := _HUB_CACHE.search(p))})
        fix = f"download once on the node: hf download {HUB_REPO} --local-dir /{mount}/{model_dir}"
        if hub:
            fix = (f"this is a Hugging Face hub cache; either point --model at /{mount}/{hub[0]} or re-download "
                   f"with --local-dir /{mount}/{model_dir}")
        return Report(subject, (Finding(ERROR, f"nothing under /{mount}/{model_dir}", fix),))
    top = {p for p in inside if "/" not in p}
    return Report(subject, tuple(_layout_findings(top, inside)))
