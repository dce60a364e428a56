"""Manifests are data: read them from ``manifests/`` and parse them (no kubectl, no schemas).

Used by every chapter: the book includes files from ``manifests/`` by path, the
notebooks load them with :func:`load`, the tests validate them
(:mod:`llmserve.world.manifests` renders and validates).
"""
from __future__ import annotations

from pathlib import Path

import yaml

from llmserve.core.errors import ManifestError
from llmserve.core.paths import MANIFESTS_DIR


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
