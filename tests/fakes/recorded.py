"""One request as the fake API server received it, and what the real server's resolver makes of it.

The resolver's rules (staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go;
https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-the-request-verb):
a GET of one object is ``get``, of a collection ``list``, with ``watch=true`` ``watch``;
POST ``create``, PUT ``update``, PATCH ``patch``, DELETE ``delete`` (``deletecollection``
without a name). Paths are ``/api/v1/…`` for the core group, ``/apis/<group>/<version>/…``
otherwise, ``namespaces/<ns>/`` before a namespaced resource, a subresource after the name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import yaml

from tests.fakes import resources

APPLY = "application/apply-patch+yaml"
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", APPLY)
VERSION = {"major": "1", "minor": "36", "gitVersion": "v1.36.0", "gitCommit": "0" * 40, "gitTreeState": "clean",
           "buildDate": "2026-08-26T00:00:00Z", "goVersion": "go1.25.0", "compiler": "gc",
           "platform": "linux/amd64"}


@dataclass
class Request:
    """One request as it arrived, and what the API server's resolver makes of it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]           # lower-case names
    body: bytes
    verb: str = ""                    # get, list, watch, create, update, patch, delete, deletecollection
    group: str = ""
    resource: str = ""                # plural, e.g. "pods"; "" for a non-resource URL (/version, /api…)
    subresource: str = ""
    namespace: str | None = None
    name: str | None = None
    code: int = 0                     # the status answered
    created: bool = False             # a server-side apply that created the object

    def param(self, key: str) -> str | None:
        values = self.query.get(key)
        return values[0] if values else None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    def json(self):
        return json.loads(self.body) if self.body else None

    def manifest(self):
        """The body as YAML (an apply body is YAML; JSON is YAML too)."""
        return yaml.safe_load(self.body) if self.body else None

    def authorized_as(self) -> list[tuple[str, str, str, str | None]]:
        """``(verb, group, resource[/subresource], namespace)`` for each check RBAC makes of this request."""
        if not self.resource:
            return []
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        checks = [(self.verb, self.group, what, self.namespace)]
        if self.created:
            checks.append(("create", self.group, what, self.namespace))
        if self.subresource in ("portforward", "exec", "attach") and self.verb == "get":
            checks.append(("create", self.group, what, self.namespace))
        return checks

    def __str__(self) -> str:
        q = "&".join(f"{k}={v}" for k, vs in sorted(self.query.items()) for v in vs)
        return f"{self.method} {self.path}{'?' + q if q else ''} → {self.code}"


def parse_path(path: str):
    """``(resource, namespace, name, subresource)`` for a resource URL, None for anything else."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and resources.by_plural(group, version, rest[2]):
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    resource = resources.by_plural(group, version, rest[0])
    if resource is None or len(rest) > 3:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else ""
    return resource, namespace, name, sub


def request_verb(method: str, name: str | None, query: dict) -> str:
    watching = (query.get("watch") or [""])[0].lower() in ("true", "1")
    if method in ("GET", "HEAD"):
        return "watch" if watching else ("get" if name else "list")
    return {"POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection"}.get(method, method.lower())
