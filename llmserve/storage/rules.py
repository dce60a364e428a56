"""PersistentVolume ↔ PersistentVolumeClaim binding rules, as the PV controller applies them.

Pure rules of the storage chapter (``book/storage.md``, ``notebooks/storage-lab.ipynb``):
plain dicts in (the shape ``yaml.safe_load`` and the API's JSON give), verdicts out; no I/O.
The checkers (:mod:`llmserve.storage.checks`) and the panels build on these.

The rules follow the Kubernetes PV controller, not a simplified picture:

* ``pkg/controller/volume/persistentvolume/pv_controller.go`` (``syncUnboundClaim``,
  ``checkVolumeSatisfyClaim``) and
* ``staging/src/k8s.io/component-helpers/storage/volume/pv_helpers.go``
  (``FindMatchingVolume``, ``CheckAccessModes``, ``IsVolumeBoundToClaim``),

as documented in https://kubernetes.io/docs/concepts/storage/persistent-volumes/.
Three paths exist:

1. the claim names no volume: the volume must offer every access mode the
   claim asks for, be at least as large, have the same volumeMode; unless the
   volume's ``claimRef`` already points at this claim, its labels must match the
   claim's selector and its class must equal the claim's class;
2. the claim names the volume (``volumeName``) and the volume has no
   ``claimRef``: size, class, volumeMode and access modes are checked, the
   selector is ignored ("Reserving a PersistentVolume" in the docs);
3. the claim names the volume and the volume's ``claimRef`` names the claim
   (pre-bound both ways, as the course does): the controller finishes the
   binding without re-checking anything. Mismatches then become warnings.

A claim with no ``storageClassName`` is given the cluster's default class by
the ``DefaultStorageClass`` admission plugin before any of this happens.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from llmserve.core.errors import InputError, ManifestError
from llmserve.core.quantity import format_bytes, parse_quantity

#: Every access mode the API accepts (persistent-volumes/#access-modes).
ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
#: The abbreviations kubectl prints (RWO, ROX, …), for guessing what a learner meant.
ABBREVIATIONS = {"RWO": "ReadWriteOnce", "ROX": "ReadOnlyMany", "RWX": "ReadWriteMany", "RWOP": "ReadWriteOncePod"}
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
#: The class annotation older manifests use instead of ``storageClassName`` (still honoured).
BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
#: What marks a StorageClass as the cluster's default (storage-classes/#default-storageclass).
DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                             "storageclass.beta.kubernetes.io/is-default-class")


# ---------------------------------------------------------------------------
# Reading the fields the rules need (with clear errors for malformed objects)
# ---------------------------------------------------------------------------
def qualified_name(obj: dict) -> str:
    """``namespace/name`` for a namespaced object, ``name`` for a cluster-scoped one."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name', '?')}" if ns else str(meta.get("name", "?"))


def spec_of(obj: dict, kind: str) -> dict:
    """The object's ``spec``, after checking it is a ``kind`` at all."""
    if not isinstance(obj, dict):
        raise ManifestError(f"Expected a {kind} as a mapping, got {type(obj).__name__}.",
                            "Pass the object as a dict (llmserve.storage.live.read_object reads a file "
                            "or YAML text).")
    if obj.get("kind") not in (None, kind):
        raise ManifestError(f"Expected a {kind}, got a {obj.get('kind')} ({qualified_name(obj)}).",
                            f"Pass the {kind} here; the other object goes in the other argument.")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise ManifestError(f"The {kind} {qualified_name(obj)} has no spec.", f"Add a spec: block to the {kind}.")
    return spec


def access_modes(obj: dict, kind: str) -> list[str]:
    """The object's access modes, validated as the API server would (unknown mode → ManifestError)."""
    modes = spec_of(obj, kind).get("accessModes")
    name = qualified_name(obj)
    if not modes:
        raise ManifestError(f"The {kind} {name} lists no accessModes.",
                            "Add spec.accessModes, e.g. [ReadOnlyMany]; the API server requires at least one.")
    if not isinstance(modes, list):
        raise ManifestError(f"spec.accessModes of {kind} {name} is not a list.",
                            "Write it as a YAML list:\n  accessModes:\n    - ReadOnlyMany")
    for mode in modes:
        if mode not in ACCESS_MODES:
            spelled = str(mode).lower().replace("-", "").replace("_", "")
            guess = ABBREVIATIONS.get(str(mode).upper()) or next(
                (m for m in ACCESS_MODES if m.lower() == spelled), None)
            raise ManifestError(f"{kind} {name}: unknown access mode {mode!r}.",
                                (f"Write {guess!r} (the API spells it out in full, case-sensitive). " if guess
                                 else "") + f"Valid modes: {', '.join(ACCESS_MODES)}.")
    # The API server's validation: "may not use ReadWriteOncePod with other access modes".
    if "ReadWriteOncePod" in modes and len(set(modes)) > 1:
        raise ManifestError(f"{kind} {name}: ReadWriteOncePod cannot be combined with other access modes.",
                            "List ReadWriteOncePod alone, or drop it.")
    return list(modes)


def claim_request(pvc: dict) -> Fraction:
    """The claim's ``resources.requests.storage`` in bytes (exact)."""
    spec = spec_of(pvc, "PersistentVolumeClaim")
    value = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if value is None:
        raise ManifestError(f"The claim {qualified_name(pvc)} requests no storage.",
                            "Add spec.resources.requests.storage, e.g. 200Gi.")
    return parse_quantity(value, f"storage request of claim {qualified_name(pvc)}")


def volume_capacity(pv: dict) -> Fraction:
    """The volume's ``capacity.storage`` in bytes (exact)."""
    spec = spec_of(pv, "PersistentVolume")
    value = (spec.get("capacity") or {}).get("storage")
    if value is None:
        raise ManifestError(f"The volume {qualified_name(pv)} has no capacity.storage.",
                            "Add spec.capacity.storage, e.g. 200Gi.")
    return parse_quantity(value, f"capacity of volume {qualified_name(pv)}")


def claim_class(pvc: dict) -> str | None:
    """The claim's requested class: ``None`` when unset (the default class will be filled in)."""
    ann = (pvc.get("metadata") or {}).get("annotations") or {}
    if BETA_CLASS_ANNOTATION in ann:
        return ann[BETA_CLASS_ANNOTATION]
    spec = spec_of(pvc, "PersistentVolumeClaim")
    return spec.get("storageClassName") if "storageClassName" in spec else None


def volume_class(pv: dict) -> str:
    """The volume's class; unset and ``""`` both mean "no class"."""
    ann = (pv.get("metadata") or {}).get("annotations") or {}
    if BETA_CLASS_ANNOTATION in ann:
        return ann[BETA_CLASS_ANNOTATION] or ""
    return spec_of(pv, "PersistentVolume").get("storageClassName") or ""


def effective_claim_class(pvc: dict, default_storage_class: str | None) -> str:
    """The class the claim ends up with after the DefaultStorageClass admission plugin."""
    cls = claim_class(pvc)
    return (default_storage_class or "") if cls is None else cls


def volume_mode(spec: dict) -> str:
    """``Filesystem`` unless the spec says ``Block`` (persistent-volumes/#volume-mode)."""
    return spec.get("volumeMode") or "Filesystem"


# ---------------------------------------------------------------------------
# Label selectors (labels/#label-selectors)
# ---------------------------------------------------------------------------
_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"


def _split_requirements(text: str) -> list[str]:
    """Split on the commas that are not inside ``in (a,b)`` parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in parts + [cur] if p.strip()]


def parse_selector_text(text: str) -> dict | None:
    """``"app=x, tier in (a,b), !legacy, gpu"`` → a ``LabelSelector`` dict (None when empty).

    The syntax of ``kubectl -l``: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``,
    ``k notin (a,b)``, ``k`` (exists), ``!k`` (does not exist).
    """
    match_labels: dict[str, str] = {}
    exprs: list[dict] = []
    for part in _split_requirements((text or "").strip()):
        if m := re.fullmatch(rf"({_KEY})\s*(==?|!=)\s*([-A-Za-z0-9_.]*)", part):
            key, op, val = m.groups()
            if op == "!=":
                exprs.append({"key": key, "operator": "NotIn", "values": [val]})
            else:
                match_labels[key] = val
        elif m := re.fullmatch(rf"({_KEY})\s+(in|notin)\s*\(([^)]*)\)", part, flags=re.I):
            key, op, vals = m.groups()
            values = [v.strip() for v in vals.split(",") if v.strip()]
            exprs.append({"key": key, "operator": "In" if op.lower() == "in" else "NotIn", "values": values})
        elif m := re.fullmatch(rf"!\s*({_KEY})", part):
            exprs.append({"key": m.group(1), "operator": "DoesNotExist"})
        elif re.fullmatch(_KEY, part):
            exprs.append({"key": part, "operator": "Exists"})
        else:
            raise InputError(f"The selector part {part!r} is not a label requirement.",
                             "Write requirements separated by commas: app=x, tier in (a,b), gpu, !legacy.")
    sel: dict = {}
    if match_labels:
        sel["matchLabels"] = match_labels
    if exprs:
        sel["matchExpressions"] = exprs
    return sel or None


def describe_selector(selector: dict | None) -> str:
    """A selector in ``kubectl -l`` syntax (``app=x,tier in (a,b)``)."""
    if not selector:
        return "(none)"
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for e in selector.get("matchExpressions") or []:
        op, key, vals = e.get("operator"), e.get("key"), e.get("values") or []
        parts.append({"In": f"{key} in ({','.join(vals)})", "NotIn": f"{key} notin ({','.join(vals)})",
                      "Exists": f"{key}", "DoesNotExist": f"!{key}"}.get(op, f"{key} {op} {vals}"))
    return ",".join(parts)


def selector_matches(selector: dict | None, labels: dict | None) -> tuple[bool, list[str]]:
    """Whether ``labels`` satisfy ``selector`` (all requirements ANDed); with the failed requirements."""
    labels = labels or {}
    if not selector:
        return True, []
    failed = [f"{key}={val}" for key, val in (selector.get("matchLabels") or {}).items()
              if labels.get(key) != str(val)]
    for e in selector.get("matchExpressions") or []:
        op, key, vals = e.get("operator"), e.get("key"), [str(v) for v in (e.get("values") or [])]
        if op not in SELECTOR_OPERATORS:
            raise ManifestError(f"Selector operator {op!r} is not valid.",
                                f"Use one of {', '.join(SELECTOR_OPERATORS)} (case-sensitive).")
        if op in ("In", "NotIn") and not vals:
            raise ManifestError(f"Selector requirement on {key!r} with {op} has no values.",
                                f"List at least one value: {{key: {key}, operator: {op}, values: [x]}}.")
        ok = {"In": key in labels and labels[key] in vals,
              "NotIn": key not in labels or labels[key] not in vals,
              "Exists": key in labels,
              "DoesNotExist": key not in labels}[op]
        if not ok:
            failed.append(describe_selector({"matchExpressions": [e]}))
    return not failed, failed


# ---------------------------------------------------------------------------
# The verdict
# ---------------------------------------------------------------------------
OUTCOME_WORDS = {"binds": "binds", "pending": "stays Pending",
                 "provisions": "is handed to the default class's provisioner: a new, empty volume, "
                               "or Pending if the provisioner refuses the access mode",
                 "pending-or-provisions": "stays Pending, or gets a new volume if that class exists"}


@dataclass
class Verdict:
    """Whether a claim binds to one volume, and exactly why (not)."""

    binds: bool
    #: "binds", "pending", "provisions" (the claim goes to a StorageClass's provisioner) or
    #: "pending-or-provisions" (depends on whether the named class exists).
    outcome: str
    reasons: list[str] = field(default_factory=list)   # why it does not bind, each naming the fix
    warnings: list[str] = field(default_factory=list)  # true, not blocking, worth fixing
    path: str = ""                                     # which controller path decided
    claim_class: str = ""                              # the class after the default admission

    def __bool__(self) -> bool:
        return self.binds

    def __str__(self) -> str:
        lines = [f"{OUTCOME_WORDS[self.outcome].upper()} — {self.path}"]
        lines += [f"  ✗ {r}" for r in self.reasons]
        lines += [f"  ! {w}" for w in self.warnings]
        return "\n".join(lines)


def _mismatches(pv: dict, pvc: dict, default_storage_class: str | None) -> dict[str, str]:
    """Every rule the pair breaks, keyed by rule, each message naming the fix."""
    pv_spec, pvc_spec = spec_of(pv, "PersistentVolume"), spec_of(pvc, "PersistentVolumeClaim")
    found: dict[str, str] = {}
    want, have = claim_request(pvc), volume_capacity(pv)
    if want > have:
        found["capacity"] = (f"the claim asks {format_bytes(want)} but the volume has {format_bytes(have)}: "
                             f"request at most {format_bytes(have)} (a claim gets at least what it asks, never less)")
    cmodes, vmodes = access_modes(pvc, "PersistentVolumeClaim"), access_modes(pv, "PersistentVolume")
    missing = [m for m in cmodes if m not in vmodes]
    if missing:
        found["accessModes"] = (f"access mode {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not offered "
                                f"by the volume (it offers {', '.join(vmodes)}): ask only for modes the volume lists")
    if volume_mode(pv_spec) != volume_mode(pvc_spec):
        found["volumeMode"] = (f"the claim wants volumeMode {volume_mode(pvc_spec)} but the volume is "
                               f"{volume_mode(pv_spec)}: make them equal (omit both for Filesystem)")
    cls, vcls = effective_claim_class(pvc, default_storage_class), volume_class(pv)
    if cls != vcls:
        if claim_class(pvc) is None and default_storage_class:
            found["class"] = (f"no storageClassName: the admission plugin fills in the default StorageClass "
                              f"'{default_storage_class}', which ≠ the volume's class '{vcls}': "
                              f"set storageClassName: \"{vcls}\" on the claim")
        else:
            found["class"] = (f"the claim's class '{cls}' ≠ the volume's class '{vcls}': "
                              f"set storageClassName: \"{vcls}\" on the claim (or the same class on both)")
    labels = (pv.get("metadata") or {}).get("labels") or {}
    ok, failed = selector_matches(pvc_spec.get("selector"), labels)
    if not ok:
        found["selector"] = (f"selector {describe_selector(pvc_spec.get('selector'))} does not match the volume's "
                             f"labels ({describe_selector({'matchLabels': labels})}); failing: "
                             f"{', '.join(failed)}: fix the selector or label the volume")
    return found


def _claim_ref_points_to(pv: dict, pvc: dict) -> bool | None:
    """None: no claimRef; True: it names this claim; False: it names another claim (or an old uid)."""
    ref = spec_of(pv, "PersistentVolume").get("claimRef")
    if not ref:
        return None
    meta = pvc.get("metadata") or {}
    same = ref.get("name") == meta.get("name") and (ref.get("namespace") or "") == (meta.get("namespace") or "")
    uid = ref.get("uid")
    if same and uid and meta.get("uid") and uid != meta.get("uid"):
        return False
    return same


@dataclass
class _Pair:
    """What every path needs to know about one volume and one claim."""

    pv_name: str
    volume_name: str          # the claim's spec.volumeName ("" when unset)
    has_selector: bool
    cls: str                  # the claim's class after admission
    default: str | None       # the cluster's default class
    found: dict[str, str]     # every rule broken, by rule
    ref_ok: bool | None       # what the volume's claimRef says about this claim
    ref_text: str             # the claimRef as namespace/name
    ref: dict

    def unbound(self, reasons: list[str], path: str, warnings: list[str]) -> Verdict:
        if self.volume_name or self.has_selector:
            outcome = "pending"   # never provisioned: a claim naming a volume, or with a selector
        elif self.cls and self.cls == self.default:
            outcome = "provisions"
        else:
            outcome = "pending-or-provisions" if self.cls else "pending"
        if outcome == "provisions":
            reasons = reasons + [f"nothing stops the default class '{self.cls}' from provisioning: the claim gets a "
                                 f"NEW, EMPTY volume (or stays Pending with ProvisioningFailed if its provisioner "
                                 f"refuses the access mode) — never the weights on {self.pv_name}"]
        return Verdict(False, outcome, reasons, warnings, path, self.cls)


def _named_volume_path(p: _Pair, pvc: dict) -> Verdict:
    """Paths 2 and 3: the claim names a volume in ``volumeName``."""
    warnings: list[str] = []
    if p.volume_name != p.pv_name:
        return p.unbound([f"the claim names volumeName '{p.volume_name}', so it can only bind to that volume, "
                          f"not '{p.pv_name}': set volumeName: {p.pv_name} (or remove it)"],
                         "volumeName names another volume", warnings)
    if p.ref_ok is False:
        return p.unbound([f"the volume is pre-bound by claimRef to {p.ref_text}, not to this claim "
                          f"({qualified_name(pvc)}): fix the claim's name/namespace or the volume's claimRef"],
                         "volumeName set, volume reserved for another claim", warnings)
    if p.ref_ok:
        warnings += [f"{msg} (not checked for a pair pre-bound both ways — fix it anyway)" for msg in p.found.values()]
        if p.has_selector:
            warnings.append("the selector is ignored when volumeName is set")
        return Verdict(True, "binds", [], warnings, "pre-bound both ways (volumeName + claimRef)", p.cls)
    reasons = [p.found[k] for k in ("capacity", "class", "volumeMode", "accessModes") if k in p.found]
    if "selector" in p.found:
        warnings.append("the selector is ignored when volumeName is set (it would not match anyway)")
    if reasons:
        return p.unbound(reasons, "volumeName set: size, class, volumeMode and access modes are checked", warnings)
    return Verdict(True, "binds", [], warnings, "volumeName set, volume free: all checks pass", p.cls)


def _search_path(p: _Pair) -> Verdict:
    """Path 1: the claim names no volume, so the controller searches the free ones."""
    warnings: list[str] = []
    if p.ref_ok is False:
        return p.unbound([f"the volume is pre-bound by claimRef to {p.ref_text}; no other claim can take it: "
                          f"name the claim {p.ref.get('name')} in namespace {p.ref.get('namespace')}, "
                          f"or fix the volume's claimRef"], "claimRef reserves the volume for another claim", warnings)
    reasons = [p.found[k] for k in ("accessModes", "capacity", "volumeMode") if k in p.found]
    if p.ref_ok:
        if reasons:
            return p.unbound(reasons, "claimRef names this claim, but access modes, size and volumeMode must "
                                      "still fit", warnings)
        warnings += [f"{p.found[k]} (ignored because the volume's claimRef names this claim)"
                     for k in ("class", "selector") if k in p.found]
        if "class" in p.found and p.cls:
            warnings.append(f"this works only if the volume exists before the claim: a claim of class '{p.cls}' "
                            f"that finds no volume is provisioned a new one by that class (at once, or when a "
                            f"Pod uses it with WaitForFirstConsumer)")
        warnings.append(f"the claim does not name the volume: add volumeName: {p.pv_name} so it cannot "
                        f"bind elsewhere first")
        return Verdict(True, "binds", [], warnings, "claimRef names this claim", p.cls)
    reasons += [p.found[k] for k in ("selector", "class") if k in p.found]
    if reasons:
        return p.unbound(reasons, "searched the free volumes: this one does not match", warnings)
    warnings.append(f"any matching claim could take this volume first: pre-bind with volumeName: {p.pv_name} "
                    f"on the claim and claimRef on the volume")
    return Verdict(True, "binds", [], warnings, "searched the free volumes: this one matches", p.cls)


def binding_verdict(pv: dict, pvc: dict, default_storage_class: str | None = "standard") -> Verdict:
    """Will this claim bind to this volume? Following the PV controller's three paths.

    ``default_storage_class`` is the cluster's default StorageClass (kind calls
    it ``standard``, k3s ``local-path``); ``None`` for a cluster without one.
    Raises ManifestError/InputError for objects the API server would refuse.
    """
    pvc_spec, pv_spec = spec_of(pvc, "PersistentVolumeClaim"), spec_of(pv, "PersistentVolume")
    ref = pv_spec.get("claimRef") or {}
    pair = _Pair(pv_name=(pv.get("metadata") or {}).get("name", "?"),
                 volume_name=pvc_spec.get("volumeName") or "",
                 has_selector=bool(pvc_spec.get("selector")),
                 cls=effective_claim_class(pvc, default_storage_class),
                 default=default_storage_class,
                 found=_mismatches(pv, pvc, default_storage_class),
                 ref_ok=_claim_ref_points_to(pv, pvc),
                 ref_text=f"{ref.get('namespace', '')}/{ref.get('name', '')}",
                 ref=ref)
    return _named_volume_path(pair, pvc) if pair.volume_name else _search_path(pair)


# ---------------------------------------------------------------------------
# The cluster's default class, reuse after a claim is deleted, claims in use
# ---------------------------------------------------------------------------
def default_storage_classes(classes: list[dict]) -> list[dict]:
    """The StorageClass dicts marked default: annotation ``storageclass.kubernetes.io/is-default-class``
    set to ``"true"`` (storage-classes/#default-storageclass; the beta annotation counts too)."""
    return [c for c in classes
            if any(((c.get("metadata") or {}).get("annotations") or {}).get(a) == "true"
                   for a in DEFAULT_CLASS_ANNOTATIONS)]


def default_storage_class(classes: list[dict]) -> str | None:
    """The name of the class a claim without ``storageClassName`` gets (None when there is no default).

    With several defaults, the most recently created one is used (storage-classes/#default-storageclass).
    """
    defaults = default_storage_classes(classes)
    if not defaults:
        return None
    newest = max(defaults, key=lambda c: (c.get("metadata") or {}).get("creationTimestamp") or "")
    return newest["metadata"]["name"]


#: What a deleted claim leaves in a Retain volume's claimRef, and what makes it unusable for a new claim.
STALE_CLAIM_REF_KEYS = ("uid", "resourceVersion")


def reuse_patch(pv: dict | None) -> list[dict]:
    """The JSON patch that makes a Released, pre-bound volume Available again (empty when none is needed).

    Deleting a claim leaves a Retain volume ``Released`` with the old claim's
    ``uid`` in ``claimRef``; a new claim of the same name has a new uid and
    stays Pending ("already bound to a different claim") until the uid goes.
    Removing ``claimRef.uid`` (and ``resourceVersion``) keeps the reservation by
    name and namespace. The data on the volume is never touched.
    """
    ref = ((pv or {}).get("spec") or {}).get("claimRef") or {}
    return [{"op": "remove", "path": f"/spec/claimRef/{key}"} for key in STALE_CLAIM_REF_KEYS if ref.get(key)]


def pods_using_claim(pods: list[dict], claim_name: str) -> list[str]:
    """Names of the Pods (as dicts) that mount ``claim_name``: deleting the claim waits for them.

    (The ``kubernetes.io/pvc-protection`` finalizer keeps a claim in use ``Terminating``;
    persistent-volumes/#storage-object-in-use-protection.)
    """
    return [p["metadata"]["name"] for p in pods
            if any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim_name
                   for v in ((p.get("spec") or {}).get("volumes") or []))]
