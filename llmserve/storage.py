"""PersistentVolume ↔ PersistentVolumeClaim binding rules, and the learner's checkers.

Used by the storage chapter (``book/storage.md``, ``notebooks/storage-lab.ipynb``)
and its panels (:mod:`llmserve.panels.storage`). Layer 1: pure logic on plain
dicts (the shape ``yaml.safe_load`` and the kubernetes client's ``to_dict()``
give). The ``check_*`` functions also accept a path or YAML text for
convenience; they parse it through :mod:`llmserve.world.manifests`.

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
from pathlib import Path
from typing import Iterable

from llmserve.core.errors import ClusterError, InputError, ManifestError

#: Every access mode the API accepts (persistent-volumes/#access-modes).
ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
ABBREVIATIONS = {"RWO": "ReadWriteOnce", "ROX": "ReadOnlyMany", "RWX": "ReadWriteMany", "RWOP": "ReadWriteOncePod"}
#: What each volume plugin can offer, from the docs' access-mode table (hostPath: ReadWriteOnce only).
HOSTPATH_MODES = ("ReadWriteOnce",)
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")

COURSE_PV = "base/model-pv.yaml"
COURSE_PVC = "base/model-pvc.yaml"
COURSE_CLAIM_NAME = "model-storage-claim"

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": 1,
            "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:([eE][+-]?\d+)|([A-Za-z]*))$")
# Common wrong spellings and what they were probably meant to be.
_SUFFIX_HINTS = {"gb": "G (10^9) or Gi (2^30)", "gib": "Gi", "gi": "Gi", "mb": "M or Mi", "mib": "Mi",
                 "mi": "Mi", "tb": "T or Ti", "tib": "Ti", "ti": "Ti", "kb": "k or Ki", "kib": "Ki",
                 "b": "no suffix (plain bytes)", "g": "G or Gi", "t": "T or Ti", "K": "k or Ki"}


# ---------------------------------------------------------------------------
# Quantities
# ---------------------------------------------------------------------------
def parse_quantity(value, what: str = "size") -> Fraction:
    """A Kubernetes storage quantity (``"200Gi"``, ``"1.5Ti"``, ``"500M"``, ``1024``) in bytes.

    Exact (a :class:`~fractions.Fraction`), as the API server compares them.
    Raises :class:`InputError` for negative sizes and unknown suffixes.
    """
    if isinstance(value, bool) or value is None:
        raise InputError(f"The {what} {value!r} is not a quantity.",
                         "Write a size such as 200Gi (binary, 2^30 bytes per Gi) or 200G (decimal).")
    if isinstance(value, (int, float)):
        number = Fraction(value)
        text = repr(value)
    else:
        text = str(value).strip()
        m = _QUANTITY.match(text)
        if not m:
            suffix = re.sub(r"^[+-]?[\d.]+", "", text)
            hint = _SUFFIX_HINTS.get(suffix) or _SUFFIX_HINTS.get(suffix.lower())
            if text and re.match(r"^[+-]?[\d.]", text) and suffix:
                fix = (f"Kubernetes does not know the suffix {suffix!r}" + (f"; use {hint}" if hint else "")
                       + ". Valid: Ki Mi Gi Ti Pi Ei (binary), k M G T P E (decimal), or plain bytes.")
            else:
                fix = "Write a number with an optional suffix, e.g. 200Gi, 1.5Ti, 500M or 1073741824."
            raise InputError(f"The {what} {text!r} is not a Kubernetes quantity.", fix)
        sign, digits, exponent, suffix = m.groups()
        number = Fraction(digits) if not digits.endswith(".") else Fraction(digits[:-1])
        if exponent:
            number *= Fraction(10) ** int(exponent[1:])
        elif suffix:
            if suffix in _BINARY:
                number *= _BINARY[suffix]
            elif suffix in _DECIMAL:
                number *= _DECIMAL[suffix]
            else:
                hint = _SUFFIX_HINTS.get(suffix) or _SUFFIX_HINTS.get(suffix.lower())
                raise InputError(f"The {what} {text!r} has an unknown suffix {suffix!r}.",
                                 (f"Use {hint}. " if hint else "")
                                 + "Valid suffixes: Ki Mi Gi Ti Pi Ei (binary), k M G T P E (decimal), "
                                   "or none for plain bytes.")
        if sign == "-":
            number = -number
    if number < 0:
        raise InputError(f"The {what} {text} is negative.", "A storage size must be zero or more, e.g. 200Gi.")
    return number


def format_bytes(n: Fraction | int) -> str:
    """Bytes as the shortest exact quantity (``"200Gi"``, ``"200G"``), else in Gi etc. with 2 decimals."""
    n = Fraction(n)
    units = [(s, u) for s, u in _BINARY.items()] + [(s, u) for s, u in _DECIMAL.items() if s and u >= 1000]
    exact = [f"{n // u}{s}" for s, u in units if n >= u and (n / u).denominator == 1]
    if n.denominator == 1:
        exact.append(str(n.numerator))
    if exact:
        return min(exact, key=len)   # binary units come first, so ties go to them
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        if n >= _BINARY[suffix]:
            return f"{float(n / _BINARY[suffix]):.2f}{suffix}"
    return f"{float(n):g} bytes"


# ---------------------------------------------------------------------------
# Reading the fields the rules need (with clear errors for malformed objects)
# ---------------------------------------------------------------------------
def _spec(obj: dict, kind: str) -> dict:
    if not isinstance(obj, dict):
        raise ManifestError(f"Expected a {kind} as a mapping, got {type(obj).__name__}.",
                            "Pass the object loaded from YAML (a dict), a path, or the YAML text.")
    if obj.get("kind") not in (None, kind):
        raise ManifestError(f"Expected a {kind}, got a {obj.get('kind')} ({_name(obj)}).",
                            f"Pass the {kind} here; the other object goes in the other argument.")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise ManifestError(f"The {kind} {_name(obj)} has no spec.", f"Add a spec: block to the {kind}.")
    return spec


def _name(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name', '?')}" if ns else str(meta.get("name", "?"))


def access_modes(obj: dict, kind: str) -> list[str]:
    """The object's access modes, validated as the API server would (unknown mode → ManifestError)."""
    modes = _spec(obj, kind).get("accessModes")
    if not modes:
        raise ManifestError(f"The {kind} {_name(obj)} lists no accessModes.",
                            "Add spec.accessModes, e.g. [ReadOnlyMany]; the API server requires at least one.")
    if not isinstance(modes, list):
        raise ManifestError(f"spec.accessModes of {kind} {_name(obj)} is not a list.",
                            "Write it as a YAML list:\n  accessModes:\n    - ReadOnlyMany")
    out = []
    for mode in modes:
        if mode not in ACCESS_MODES:
            guess = ABBREVIATIONS.get(str(mode).upper()) or next(
                (m for m in ACCESS_MODES if m.lower() == str(mode).lower().replace("-", "").replace("_", "")), None)
            raise ManifestError(f"{kind} {_name(obj)}: unknown access mode {mode!r}.",
                                (f"Write {guess!r} (the API spells it out in full, case-sensitive). " if guess else "")
                                + f"Valid modes: {', '.join(ACCESS_MODES)}.")
        out.append(mode)
    if "ReadWriteOncePod" in out and len(set(out)) > 1:
        raise ManifestError(f"{kind} {_name(obj)}: ReadWriteOncePod cannot be combined with other access modes.",
                            "List ReadWriteOncePod alone, or drop it.")
    return out


def claim_request(pvc: dict) -> Fraction:
    spec = _spec(pvc, "PersistentVolumeClaim")
    value = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if value is None:
        raise ManifestError(f"The claim {_name(pvc)} requests no storage.",
                            "Add spec.resources.requests.storage, e.g. 200Gi.")
    return parse_quantity(value, f"storage request of claim {_name(pvc)}")


def volume_capacity(pv: dict) -> Fraction:
    spec = _spec(pv, "PersistentVolume")
    value = (spec.get("capacity") or {}).get("storage")
    if value is None:
        raise ManifestError(f"The volume {_name(pv)} has no capacity.storage.", "Add spec.capacity.storage, e.g. 200Gi.")
    return parse_quantity(value, f"capacity of volume {_name(pv)}")


_BETA_CLASS = "volume.beta.kubernetes.io/storage-class"


def claim_class(pvc: dict) -> str | None:
    """The claim's requested class: ``None`` when unset (the default class will be filled in)."""
    ann = (pvc.get("metadata") or {}).get("annotations") or {}
    if _BETA_CLASS in ann:
        return ann[_BETA_CLASS]
    spec = _spec(pvc, "PersistentVolumeClaim")
    return spec.get("storageClassName") if "storageClassName" in spec else None


def volume_class(pv: dict) -> str:
    """The volume's class; unset and ``""`` both mean "no class"."""
    ann = (pv.get("metadata") or {}).get("annotations") or {}
    if _BETA_CLASS in ann:
        return ann[_BETA_CLASS] or ""
    return _spec(pv, "PersistentVolume").get("storageClassName") or ""


def effective_claim_class(pvc: dict, default_storage_class: str | None) -> str:
    """The class the claim ends up with after the DefaultStorageClass admission plugin."""
    cls = claim_class(pvc)
    if cls is None:
        return default_storage_class or ""
    return cls


def _volume_mode(spec: dict) -> str:
    return spec.get("volumeMode") or "Filesystem"


def parse_selector_text(text: str) -> dict | None:
    """``"app=x, tier in (a,b), !legacy, gpu"`` → a ``LabelSelector`` dict (None when empty).

    The syntax of ``kubectl -l`` (labels/#label-selectors): ``k=v``, ``k==v``,
    ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k`` (exists), ``!k`` (does not exist).
    """
    text = (text or "").strip()
    if not text:
        return None
    match_labels: dict[str, str] = {}
    exprs: list[dict] = []
    # Split on commas that are not inside parentheses.
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    key_re = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
    for raw in parts:
        part = raw.strip()
        if not part:
            continue
        if m := re.fullmatch(rf"({key_re})\s*(==?|!=)\s*([-A-Za-z0-9_.]*)", part):
            key, op, val = m.groups()
            if op == "!=":
                exprs.append({"key": key, "operator": "NotIn", "values": [val]})
            else:
                match_labels[key] = val
        elif m := re.fullmatch(rf"({key_re})\s+(in|notin)\s*\(([^)]*)\)", part, flags=re.I):
            key, op, vals = m.groups()
            values = [v.strip() for v in vals.split(",") if v.strip()]
            exprs.append({"key": key, "operator": "In" if op.lower() == "in" else "NotIn", "values": values})
        elif m := re.fullmatch(rf"!\s*({key_re})", part):
            exprs.append({"key": m.group(1), "operator": "DoesNotExist"})
        elif re.fullmatch(key_re, part):
            exprs.append({"key": part, "operator": "Exists"})
        else:
            raise InputError(f"The selector part {part!r} is not a label requirement.",
                             "Write requirements separated by commas: app=x, tier in (a,b), gpu, !legacy.")
    sel: dict = {}
    if match_labels:
        sel["matchLabels"] = match_labels
    if exprs:
        sel["matchExpressions"] = exprs
    return sel


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
    failed = []
    for key, val in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != str(val):
            failed.append(f"{key}={val}")
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
                 "provisions": "gets a new, empty volume from the default class",
                 "pending-or-provisions": "stays Pending, or gets a new volume if that class exists"}


@dataclass
class Verdict:
    """Whether a claim binds to one volume, and exactly why (not)."""

    binds: bool
    #: "binds", "pending", "provisions" (the claim gets a NEW volume from a StorageClass) or
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
    pv_spec, pvc_spec = _spec(pv, "PersistentVolume"), _spec(pvc, "PersistentVolumeClaim")
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
    if _volume_mode(pv_spec) != _volume_mode(pvc_spec):
        found["volumeMode"] = (f"the claim wants volumeMode {_volume_mode(pvc_spec)} but the volume is "
                               f"{_volume_mode(pv_spec)}: make them equal (omit both for Filesystem)")
    requested = claim_class(pvc)
    cls, vcls = effective_claim_class(pvc, default_storage_class), volume_class(pv)
    if cls != vcls:
        if requested is None and default_storage_class:
            found["class"] = (f"no storageClassName: the admission plugin fills in the default StorageClass "
                              f"'{default_storage_class}', which ≠ the volume's class '{vcls}': "
                              f"set storageClassName: \"{vcls}\" on the claim")
        else:
            found["class"] = (f"the claim's class '{cls}' ≠ the volume's class '{vcls}': "
                              f"set storageClassName: \"{vcls}\" on the claim (or the same class on both)")
    ok, failed = selector_matches(pvc_spec.get("selector"), (pv.get("metadata") or {}).get("labels"))
    if not ok:
        found["selector"] = (f"selector {describe_selector(pvc_spec.get('selector'))} does not match the volume's "
                             f"labels ({describe_selector({'matchLabels': (pv.get('metadata') or {}).get('labels') or {}})})"
                             f"; failing: {', '.join(failed)}: fix the selector or label the volume")
    return found


def _claim_ref_points_to(pv: dict, pvc: dict) -> bool | None:
    """None: no claimRef; True: it names this claim; False: it names another claim."""
    ref = _spec(pv, "PersistentVolume").get("claimRef")
    if not ref:
        return None
    meta = pvc.get("metadata") or {}
    same = ref.get("name") == meta.get("name") and (ref.get("namespace") or "") == (meta.get("namespace") or "")
    uid = ref.get("uid")
    if same and uid and meta.get("uid") and uid != meta.get("uid"):
        return False
    return same


def binding_verdict(pv: dict, pvc: dict, default_storage_class: str | None = "standard") -> Verdict:
    """Will this claim bind to this volume? Following the PV controller's three paths.

    ``default_storage_class`` is the cluster's default StorageClass (kind calls
    it ``standard``, k3s ``local-path``); ``None`` for a cluster without one.
    Raises ManifestError/InputError for objects the API server would refuse.
    """
    pv_name = (pv.get("metadata") or {}).get("name", "?")
    pvc_spec = _spec(pvc, "PersistentVolumeClaim")
    _spec(pv, "PersistentVolume")
    found = _mismatches(pv, pvc, default_storage_class)
    cls = effective_claim_class(pvc, default_storage_class)
    ref_ok = _claim_ref_points_to(pv, pvc)
    ref = _spec(pv, "PersistentVolume").get("claimRef") or {}
    ref_text = f"{ref.get('namespace', '')}/{ref.get('name', '')}"
    volume_name = pvc_spec.get("volumeName") or ""
    warnings: list[str] = []

    def unbound(reasons: list[str], path: str) -> Verdict:
        if volume_name:
            outcome = "pending"   # a claim naming a volume is never provisioned
        elif pvc_spec.get("selector"):
            outcome = "pending"   # no dynamic provisioning for claims with a selector
        elif cls and cls == default_storage_class:
            outcome = "provisions"
        elif cls:
            outcome = "pending-or-provisions"
        else:
            outcome = "pending"
        if outcome == "provisions":
            reasons = reasons + [f"nothing stops the default class '{cls}' from provisioning: the claim gets a NEW, "
                                 f"EMPTY volume (or Pending with ProvisioningFailed if its provisioner refuses "
                                 f"the access mode) — never the weights on {pv_name}"]
        return Verdict(False, outcome, reasons, warnings, path, cls)

    if volume_name:
        if volume_name != pv_name:
            return unbound([f"the claim names volumeName '{volume_name}', so it can only bind to that volume, "
                            f"not '{pv_name}': set volumeName: {pv_name} (or remove it)"],
                           "volumeName names another volume")
        if ref_ok is False:
            return unbound([f"the volume is pre-bound by claimRef to {ref_text}, not to this claim "
                            f"({_name(pvc)}): fix the claim's name/namespace or the volume's claimRef"],
                           "volumeName set, volume reserved for another claim")
        if ref_ok:
            warnings += [f"{msg} (not checked for a pair pre-bound both ways — fix it anyway)"
                         for msg in found.values()]
            if pvc_spec.get("selector"):
                warnings.append("the selector is ignored when volumeName is set")
            return Verdict(True, "binds", [], warnings, "pre-bound both ways (volumeName + claimRef)", cls)
        reasons = [found[k] for k in ("capacity", "class", "volumeMode", "accessModes") if k in found]
        if "selector" in found:
            warnings.append("the selector is ignored when volumeName is set (it would not match anyway)")
        if reasons:
            return unbound(reasons, "volumeName set: size, class, volumeMode and access modes are checked")
        return Verdict(True, "binds", [], warnings, "volumeName set, volume free: all checks pass", cls)

    # No volumeName: the controller searches the volumes.
    if ref_ok is False:
        return unbound([f"the volume is pre-bound by claimRef to {ref_text}; no other claim can take it: "
                        f"name the claim {ref.get('name')} in namespace {ref.get('namespace')}, "
                        f"or fix the volume's claimRef"], "claimRef reserves the volume for another claim")
    reasons = [found[k] for k in ("accessModes", "capacity", "volumeMode") if k in found]
    if ref_ok:
        if reasons:
            return unbound(reasons, "claimRef names this claim, but access modes, size and volumeMode must still fit")
        warnings += [f"{found[k]} (ignored because the volume's claimRef names this claim)"
                     for k in ("class", "selector") if k in found]
        if "class" in found and cls:
            warnings.append(f"this works only if the volume exists before the claim: a claim of class '{cls}' "
                            f"that finds no volume is provisioned a new one by that class (at once, or when a "
                            f"Pod uses it with WaitForFirstConsumer)")
        warnings.append(f"the claim does not name the volume: add volumeName: {pv_name} so it cannot "
                        f"bind elsewhere first")
        return Verdict(True, "binds", [], warnings, "claimRef names this claim", cls)
    reasons += [found[k] for k in ("selector", "class") if k in found]
    if reasons:
        return unbound(reasons, "searched the free volumes: this one does not match")
    warnings.append(f"any matching claim could take this volume first: pre-bind with volumeName: {pv_name} "
                    f"on the claim and claimRef on the volume")
    return Verdict(True, "binds", [], warnings, "searched the free volumes: this one matches", cls)


# ---------------------------------------------------------------------------
# The learner's checkers
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    level: str   # "error" (will not work), "warning" (works, but risky), "ok"
    what: str
    fix: str = ""

    def __str__(self) -> str:
        mark = {"error": "✗", "warning": "!", "ok": "✓"}[self.level]
        return f"{mark} {self.what}" + (f"\n    fix: {self.fix}" if self.fix else "")


@dataclass
class Report:
    subject: str
    findings: list[Finding] = field(default_factory=list)
    verdict: Verdict | None = None

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def __str__(self) -> str:
        n_err, n_warn = len(self.errors), len(self.warnings)
        head = (f"{self.subject}: OK" if self.ok else f"{self.subject}: {n_err} problem{'s' * (n_err != 1)}") + (
            f", {n_warn} warning{'s' * (n_warn != 1)}" if n_warn else "")
        return "\n".join([head] + [f"  {str(f)}".replace("\n", "\n  ") for f in self.findings])

    def _repr_pretty_(self, p, cycle) -> None:  # IPython shows str() instead of the dataclass repr
        p.text(str(self))


def _coerce(src, kind: str) -> dict:
    """A dict, a path (under manifests/ or absolute) or YAML text → one object of ``kind``."""
    from llmserve.world import manifests  # layer 2, used only to parse what the learner passed

    if isinstance(src, dict):
        obj = src
    elif isinstance(src, Path) or (isinstance(src, str) and "\n" not in src.strip()
                                   and src.strip().endswith((".yaml", ".yml"))):
        objs = manifests.load(src)
        obj = _pick(objs, kind, str(src))
    elif isinstance(src, str):
        objs = manifests.load_text(src, source="the YAML text")
        obj = _pick(objs, kind, "the YAML text")
    else:
        raise InputError(f"Cannot check a {type(src).__name__}.",
                         f"Pass the {kind} as a dict, a path to a .yaml file, or YAML text.")
    if obj.get("kind") != kind:
        raise ManifestError(f"Expected a {kind}, got a {obj.get('kind')} ({_name(obj)}).",
                            f"Pass the {kind} manifest here.")
    return obj


def _pick(objs: list[dict], kind: str, source: str) -> dict:
    mine = [o for o in objs if o.get("kind") == kind]
    if len(mine) == 1:
        return mine[0]
    if not mine:
        kinds = ", ".join(str(o.get("kind")) for o in objs)
        raise ManifestError(f"{source} holds no {kind} (it holds: {kinds}).", f"Pass a file or text with a {kind}.")
    raise ManifestError(f"{source} holds {len(mine)} {kind} objects.", f"Pass one {kind} at a time.")


def course_volume() -> dict:
    """The course's PersistentVolume, from manifests/base/model-pv.yaml."""
    from llmserve.world import manifests
    return manifests.load_one(COURSE_PV)


def course_claim() -> dict:
    """The course's PersistentVolumeClaim, from manifests/base/model-pvc.yaml."""
    from llmserve.world import manifests
    return manifests.load_one(COURSE_PVC)


def _claim_findings(pvc: dict, namespace: str | None) -> list[Finding]:
    out: list[Finding] = []
    spec = _spec(pvc, "PersistentVolumeClaim")
    claim_request(pvc)  # raises for bad sizes
    modes = access_modes(pvc, "PersistentVolumeClaim")
    ns = (pvc.get("metadata") or {}).get("namespace")
    if namespace and not ns:
        out.append(Finding("warning", "the claim has no metadata.namespace: it lands in your kubectl context's "
                           "namespace (often 'default'), where the vLLM Pod cannot use it",
                           f"add namespace: {namespace} (claims are namespaced; the Pod and its claim must share one)"))
    elif namespace and ns != namespace:
        out.append(Finding("error", f"the claim is in namespace '{ns}', the vLLM Pod runs in '{namespace}'",
                           f"set metadata.namespace: {namespace}"))
    if claim_class(pvc) is None:
        out.append(Finding("error", "no storageClassName: the DefaultStorageClass admission plugin fills in the "
                           "cluster's default class; unless the claim is pre-bound, that class's provisioner makes "
                           "a new EMPTY volume instead of binding the pre-made one with the weights",
                           'set storageClassName: "" (an explicit empty string) on the claim and on the volume'))
    elif claim_class(pvc):
        out.append(Finding("warning", f"storageClassName '{claim_class(pvc)}': the claim binds only to volumes of "
                           "that class, or is given a new volume by that class's provisioner",
                           'for the pre-made weights volume use storageClassName: ""'))
    if not spec.get("volumeName"):
        out.append(Finding("warning", "no volumeName: the claim takes any matching free volume, not necessarily "
                           "the one with the weights", "pin it: volumeName: model-storage"))
    writes = [m for m in modes if m != "ReadOnlyMany"]
    if writes:
        out.append(Finding("warning", f"access mode {', '.join(writes)}: serving only reads the weights",
                           "ask for ReadOnlyMany (and mount the volume with readOnly: true in the Pod)"))
    if spec.get("selector") and spec.get("volumeName"):
        out.append(Finding("warning", "the selector is ignored when volumeName is set", "drop one of the two"))
    return out


def _volume_findings(pv: dict) -> list[Finding]:
    out: list[Finding] = []
    spec = _spec(pv, "PersistentVolume")
    volume_capacity(pv)
    modes = access_modes(pv, "PersistentVolume")
    policy = spec.get("persistentVolumeReclaimPolicy") or "Retain"
    if policy == "Recycle":
        out.append(Finding("error", "persistentVolumeReclaimPolicy: Recycle runs `rm -rf /thevolume/*` when the "
                           "claim is deleted: the weights would be scrubbed",
                           "set persistentVolumeReclaimPolicy: Retain"))
    elif policy == "Delete":
        out.append(Finding("error", "persistentVolumeReclaimPolicy: Delete asks the volume plugin to delete the "
                           "storage when the claim is deleted",
                           "set persistentVolumeReclaimPolicy: Retain (the weights must outlive any claim)"))
    if volume_class(pv):
        out.append(Finding("warning", f"the volume has class '{volume_class(pv)}': only claims asking for that "
                           "class can bind", 'use storageClassName: "" on both for a hand-made volume'))
    if not spec.get("claimRef"):
        out.append(Finding("warning", "no claimRef: any matching claim in any namespace can take this volume first",
                           "reserve it: claimRef: {namespace: ai-platform, name: model-storage-claim}"))
    elif not spec["claimRef"].get("namespace"):
        out.append(Finding("error", "claimRef has no namespace: claims are namespaced, so it matches no claim",
                           "add claimRef.namespace: ai-platform"))
    host = spec.get("hostPath")
    if host is not None:
        if any(m != "ReadWriteOnce" for m in modes):
            out.append(Finding("warning", f"hostPath volume listing {', '.join(modes)}: the docs' table lists only "
                               "ReadWriteOnce for hostPath, and access modes are never enforced — listing "
                               "ReadOnlyMany only lets a ReadOnlyMany claim match; it does not make the data "
                               "read-only", "mount it with readOnly: true in the Pod (check_mount checks that)"))
        htype = host.get("type") or ""
        if htype in ("DirectoryOrCreate", ""):
            out.append(Finding("warning", f"hostPath type {htype or '(unset)'}: a missing {host.get('path')} is "
                               + ("created empty" if htype else "not checked") + " instead of failing the mount",
                               "set hostPath.type: Directory so a missing weights directory fails loudly"))
        if not spec.get("nodeAffinity"):
            out.append(Finding("warning", "hostPath without nodeAffinity: on a cluster of more than one node the "
                               "Pod may land on a node whose /models is empty",
                               "single node: fine. More nodes: use a `local` volume with nodeAffinity "
                               "(manifests/examples/storage/local-pv.yaml) or network storage"))
    return out


def check_claim(src, pv=None, default_storage_class: str | None = "standard",
                namespace: str | None = "ai-platform") -> Report:
    """Check a claim (dict, path or YAML text) on its own and against a volume (the course's by default)."""
    pvc = _coerce(src, "PersistentVolumeClaim")
    vol = course_volume() if pv is None else _coerce(pv, "PersistentVolume")
    findings = _claim_findings(pvc, namespace)
    verdict = binding_verdict(vol, pvc, default_storage_class)
    vname = (vol.get("metadata") or {}).get("name")
    if verdict.binds:
        findings.insert(0, Finding("ok", f"binds to volume {vname} ({verdict.path})"))
    else:
        findings.insert(0, Finding("error", f"does not bind to volume {vname}: {OUTCOME_WORDS[verdict.outcome]} "
                                   f"({verdict.path})", "see the reasons below"))
        findings[1:1] = [Finding("error", r) for r in verdict.reasons if not r.startswith("no storageClassName")]
    # The claim-only findings above already say these in their own words.
    covered = ("no storageClassName", "the claim does not name the volume", "the selector is ignored")
    findings += [Finding("warning", w) for w in verdict.warnings if not w.startswith(covered)]
    return Report(f"Claim {_name(pvc)}", _dedupe(findings), verdict)


def check_volume(src) -> Report:
    """Check a PersistentVolume meant to hold the weights (reclaim policy, class, claimRef, hostPath)."""
    pv = _coerce(src, "PersistentVolume")
    findings = _volume_findings(pv)
    if not any(f.level == "error" for f in findings):
        findings.insert(0, Finding("ok", "keeps the weights when the claim is deleted and binds only as intended"))
    return Report(f"Volume {_name(pv)}", findings)


def check_pair(pv_src, pvc_src, default_storage_class: str | None = "standard",
               namespace: str | None = "ai-platform") -> Report:
    """Check a volume and a claim together: each on its own, then whether they bind."""
    pv = _coerce(pv_src, "PersistentVolume")
    claim = check_claim(pvc_src, pv, default_storage_class, namespace)
    vol = check_volume(pv)
    return Report(f"{vol.subject} + {claim.subject}", _dedupe(claim.findings + vol.findings), claim.verdict)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        if f.what not in seen:
            seen.add(f.what)
            out.append(f)
    return out


def _pod_spec(obj: dict) -> dict:
    kind = obj.get("kind")
    if kind == "Pod":
        spec = obj.get("spec")
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        spec = ((obj.get("spec") or {}).get("template") or {}).get("spec")
    else:
        raise ManifestError(f"{kind} {_name(obj)} has no Pod template.",
                            "Pass a Pod or a workload with spec.template (Deployment, StatefulSet…).")
    if not isinstance(spec, dict):
        raise ManifestError(f"{kind} {_name(obj)} has no Pod spec.", "Add the Pod spec (containers, volumes).")
    return spec


def check_mount(src, claim_name: str = COURSE_CLAIM_NAME, mount_path: str = "/models") -> Report:
    """Check that the Pod mounts the weights claim read-only where ``--model`` looks for them."""
    from llmserve.world import manifests
    if isinstance(src, dict):
        obj = src
    elif isinstance(src, (str, Path)) and (isinstance(src, Path) or str(src).strip().endswith((".yaml", ".yml"))):
        obj = manifests.load(src)[0]
    elif isinstance(src, str):
        obj = manifests.load_text(src, "the YAML text")[0]
    else:
        raise InputError(f"Cannot check a {type(src).__name__}.", "Pass a Pod/Deployment dict, path or YAML text.")
    spec = _pod_spec(obj)
    subject = f"{obj.get('kind')} {_name(obj)}"
    vols = [v for v in spec.get("volumes") or [] if (v.get("persistentVolumeClaim") or {}).get("claimName") == claim_name]
    if not vols:
        return Report(subject, [Finding("error", f"no volume uses the claim {claim_name}",
                                        f"add volumes: [{{name: models, persistentVolumeClaim: "
                                        f"{{claimName: {claim_name}, readOnly: true}}}}]")])
    findings: list[Finding] = []
    vol = vols[0]
    if not vol["persistentVolumeClaim"].get("readOnly"):
        findings.append(Finding("warning", f"volume '{vol['name']}': persistentVolumeClaim.readOnly is not set",
                                "add readOnly: true there too (it forces every mount of it read-only)"))
    mounts = [(c.get("name"), m) for c in spec.get("containers") or [] for m in c.get("volumeMounts") or []
              if m.get("name") == vol["name"]]
    if not mounts:
        findings.append(Finding("error", f"no container mounts volume '{vol['name']}'",
                                f"add volumeMounts: [{{name: {vol['name']}, mountPath: {mount_path}, readOnly: true}}]"))
    pvc_ro = bool(vol["persistentVolumeClaim"].get("readOnly"))
    for cname, m in mounts:
        if not m.get("readOnly") and not pvc_ro:
            findings.append(Finding("error", f"container {cname} mounts {m.get('mountPath')} read-WRITE: "
                                    "ReadOnlyMany on the claim does not stop writes (access modes are not enforced)",
                                    "add readOnly: true to this volumeMount"))
        elif not m.get("readOnly"):
            findings.append(Finding("warning", f"container {cname}: the volumeMount lacks readOnly: true "
                                    "(the claim's readOnly covers it, but say it where readers look)",
                                    "add readOnly: true to the volumeMount"))
        else:
            findings.append(Finding("ok", f"container {cname} mounts {claim_name} read-only at {m.get('mountPath')}"))
        if m.get("mountPath") != mount_path:
            findings.append(Finding("warning", f"container {cname} mounts it at {m.get('mountPath')}, "
                                    f"not {mount_path}", "make --model point inside the mountPath"))
    for c in spec.get("containers") or []:
        args = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
        for i, a in enumerate(args):
            model = a.split("=", 1)[1] if a.startswith("--model=") else (
                args[i + 1] if a == "--model" and i + 1 < len(args) else None)
            if model is None:
                continue
            mpaths = [m.get("mountPath") for cname, m in mounts if cname == c.get("name")]
            if model.startswith("/") and not any(model == p or model.startswith(p.rstrip("/") + "/") for p in mpaths):
                findings.append(Finding("error", f"container {c.get('name')}: --model {model} is not inside any "
                                        f"mount of the claim ({', '.join(mpaths) or 'none'})",
                                        "point --model at a directory under the mountPath"))
            elif not model.startswith("/"):
                findings.append(Finding("warning", f"container {c.get('name')}: --model {model} is a hub name, "
                                        "so vLLM downloads it instead of reading the volume",
                                        "use the local path, e.g. --model=/models/qwen25-coder-7b-awq"))
    return Report(subject, findings)


# ---------------------------------------------------------------------------
# What lies in the model directory
# ---------------------------------------------------------------------------
_HUB_CACHE = re.compile(r"(?:^|/)models--([^/]+)--([^/]+)/snapshots/([0-9a-f]{7,64})(?:/|$)")


def check_model_dir(paths: Iterable[str], model_dir: str = "qwen25-coder-7b-awq") -> Report:
    """Is this listing (paths relative to /models, e.g. from ``find /models -type f``) a directory vLLM can load?

    vLLM's ``--model /models/<dir>`` wants a plain Hugging Face model directory:
    ``config.json``, the tokenizer files and ``*.safetensors`` weights side by side —
    what ``hf download REPO --local-dir /models/<dir>`` writes. A hub cache
    (``models--Org--Name/snapshots/<hash>/``) works only if ``--model`` points at
    the snapshot directory.
    """
    rel = [p.strip().lstrip("./") for p in paths if p and p.strip()]
    rel = [p[len("models/"):] if p.startswith("models/") else p for p in rel]
    subject = f"/models/{model_dir}"
    inside = [p[len(model_dir) + 1:] for p in rel if p.startswith(model_dir + "/")]
    findings: list[Finding] = []
    hub = {m.group(0).strip("/") for p in rel if (m := _HUB_CACHE.search(p))}
    if not inside:
        fix = f"download once on the node: hf download Qwen/Qwen2.5-Coder-7B-Instruct-AWQ --local-dir /models/{model_dir}"
        if hub:
            snap = sorted(hub)[0]
            fix = (f"this is a Hugging Face hub cache; either point --model at /models/{snap} or re-download "
                   f"with --local-dir /models/{model_dir}")
        return Report(subject, [Finding("error", f"nothing under /models/{model_dir}", fix)])
    names = {p.rsplit("/", 1)[-1] for p in inside if "/" not in p}
    if "config.json" not in names:
        findings.append(Finding("error", "no config.json at the top of the directory",
                                "the directory must be the model itself, not a parent of it"))
    weights = [n for n in names if n.endswith(".safetensors")]
    if not weights:
        bins = [n for n in names if n.endswith(".bin")]
        findings.append(Finding("error" if not bins else "warning",
                                "no *.safetensors weights" + (" (only .bin: slower to load, pickle-based)" if bins else ""),
                                "download the safetensors files of the repository"))
    if "tokenizer.json" not in names and "tokenizer.model" not in names and "vocab.json" not in names:
        findings.append(Finding("error", "no tokenizer files (tokenizer.json / vocab.json + merges.txt)",
                                "download the whole repository, not only the weights"))
    index = "model.safetensors.index.json" in names
    if len(weights) > 1 and not index:
        findings.append(Finding("warning", "several safetensors shards but no model.safetensors.index.json",
                                "download the index file too"))
    if any(_HUB_CACHE.search(p) for p in inside):
        findings.append(Finding("warning", "a hub cache (models--…/snapshots/…) inside the model directory",
                                "use --local-dir so the files lie directly in the directory"))
    if not any(f.level == "error" for f in findings):
        findings.insert(0, Finding("ok", f"a plain model directory: config.json, tokenizer, {len(weights)} "
                                   f"safetensors file{'s' * (len(weights) != 1)}"))
    return Report(subject, findings)


# ---------------------------------------------------------------------------
# Live: conditions for Cluster.wait_for, events
# ---------------------------------------------------------------------------
def claim_phase(obj: dict | None) -> tuple[bool, str]:
    """A ``Cluster.wait_for`` condition: done when the claim is Bound; Lost raises (waiting cannot help)."""
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
        raise ClusterError(f"Claim {_name(obj)} is Lost: its volume {spec.get('volumeName')} was deleted or "
                           "re-bound. The weights on the node are untouched (hostPath, Retain).",
                           "Re-create the PersistentVolume from manifests/base/model-pv.yaml, then the claim.")
    hint = ""
    if "storageClassName" in spec and spec.get("storageClassName") not in ("", None):
        hint = f" (class '{spec['storageClassName']}': check `kubectl get pv` and the events)"
    return False, f"Pending{hint}"


def volume_phase(obj: dict | None) -> tuple[bool, str]:
    """A ``Cluster.wait_for`` condition for the PV: done when Bound."""
    if obj is None:
        return False, "the volume does not exist yet"
    phase = (obj.get("status") or {}).get("phase") or "Pending"
    ref = (obj.get("spec") or {}).get("claimRef") or {}
    return phase == "Bound", f"{phase}" + (f" (claimRef {ref.get('namespace')}/{ref.get('name')})" if ref else "")


def format_events(events: list[dict]) -> str:
    """Events as `kubectl describe` shows them at the end: type, reason, message."""
    if not events:
        return "No events (a claim that binds at once may have none)."
    lines = []
    for e in events:
        count = e.get("count") or 1
        lines.append(f"{e.get('type', ''):8} {e.get('reason', ''):22} "
                     f"{e.get('message', '')}" + (f" (x{count})" if count > 1 else ""))
    return "\n".join(lines)


def volume_phase_in(*phases: str):
    """A ``Cluster.wait_for`` condition: done when the PV's phase is one of ``phases``."""
    def condition(obj: dict | None) -> tuple[bool, str]:
        if obj is None:
            return False, "the volume does not exist"
        phase = (obj.get("status") or {}).get("phase") or "Pending"
        return phase in phases, phase
    return condition


def reuse_patch(pv: dict | None) -> list[dict]:
    """The JSON patch that makes a Released, pre-bound volume Available again (empty when none is needed).

    Deleting a claim leaves a Retain volume ``Released`` with the old claim's
    ``uid`` in ``claimRef``; a new claim of the same name has a new uid and
    stays Pending ("already bound to a different claim") until the uid goes.
    Removing ``claimRef.uid`` (and ``resourceVersion``) keeps the reservation by
    name and namespace. The data on the volume is never touched.
    """
    ref = ((pv or {}).get("spec") or {}).get("claimRef") or {}
    return [{"op": "remove", "path": f"/spec/claimRef/{key}"} for key in ("uid", "resourceVersion") if ref.get(key)]


def pods_using_claim(pods: list[dict], claim_name: str = COURSE_CLAIM_NAME) -> list[str]:
    """Names of the Pods (as dicts) that mount ``claim_name``: deleting the claim waits for them."""
    return [p["metadata"]["name"] for p in pods
            if any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim_name
                   for v in ((p.get("spec") or {}).get("volumes") or []))]


_DEFAULT_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class")


def default_storage_class(classes: list[dict]) -> str | None:
    """The cluster's default StorageClass from a list of StorageClass dicts (None when there is none).

    A class is the default when its annotation ``storageclass.kubernetes.io/is-default-class``
    is ``"true"`` (storage-classes/#default-storageclass). With several, the newest one wins.
    """
    defaults = [c for c in classes
                if any(((c.get("metadata") or {}).get("annotations") or {}).get(a) == "true"
                       for a in _DEFAULT_ANNOTATIONS)]
    if not defaults:
        return None
    newest = max(defaults, key=lambda c: (c.get("metadata") or {}).get("creationTimestamp") or "")
    return newest["metadata"]["name"]
