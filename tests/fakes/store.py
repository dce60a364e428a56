"""The fake API server's objects: create, server-side apply, patch, delete, list, and the change log watches read.

What it keeps of the real server's behaviour, because the course depends on it:

* every write stamps ``metadata.uid``, ``resourceVersion`` (one counter for the
  whole store, as etcd's revision) and ``creationTimestamp``; ``generation``
  starts at 1 and grows when ``spec`` changes;
* server-side apply (https://kubernetes.io/docs/reference/using-api/server-side-apply/)
  records which manager set which field; applying a field another manager set to
  a different value is a conflict (409) unless ``force=true``; fields a manager
  stops applying are removed; the answer says whether the apply created the object
  (201) or changed it (200) — staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go;
* JSON merge patch (RFC 7386) and JSON patch (RFC 6902) change only an existing
  object (a missing one is 404); a strategic merge patch is treated as a merge
  patch (no course code sends one on purpose);
* objects in a namespace need the namespace (NamespaceLifecycle admission: 404
  ``namespaces "x" not found``); deleting a namespace deletes what is in it;
* a Secret's ``stringData`` is stored as base64 ``data`` (:func:`normalize`).

Lists are atomic in this model (the real apply merges some lists by key): the
course applies whole manifests, so it never relies on a list merge.
"""
from __future__ import annotations

import base64
import copy
import datetime as dt
import threading
import uuid

from tests.fakes import selectors, status
from tests.fakes.resources import Resource, by_kind

SKIP_PATHS = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def leaf_paths(obj, prefix=()) -> dict[tuple, object]:
    """Every leaf of a manifest as ``{path: value}``; lists count as one leaf."""
    out = {}
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            out.update(leaf_paths(v, prefix + (k,)))
    else:
        out[prefix] = obj
    return {p: v for p, v in out.items() if p not in SKIP_PATHS and p[:1] != ("status",)}


def _get_path(obj, path):
    node = obj
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _set_path(obj, path, value) -> None:
    node = obj
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = copy.deepcopy(value)


def _del_path(obj, path) -> None:
    node = obj
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)


_MISSING = object()


def merge_patch(target, patch):
    """RFC 7386: ``null`` removes, objects merge, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path: str) -> list:
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(target: dict, ops: list[dict]) -> dict:
    """RFC 6902 ``add``, ``remove``, ``replace`` and ``test``; anything that does not apply raises ValueError."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = _pointer(op["path"])
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        kind = op["op"]
        if kind == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last, _MISSING)
            if current != op["value"]:
                raise ValueError(f"testing value {op['path']} failed")
        elif kind == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            elif last in parent:
                del parent[last]
            else:
                raise ValueError(f"unable to remove nonexistent key: {last}")
        elif kind in ("add", "replace"):
            if kind == "replace" and not isinstance(parent, list) and last not in parent:
                raise ValueError(f"replace operation does not apply: doc is missing key: {op['path']}")
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                parent[last] = op["value"]
        else:
            raise ValueError(f"operation {kind!r} is not supported by the fake")
    return doc


def normalize(obj: dict) -> dict:
    """What the API server does to an object on every write that the course reads back.

    A Secret's ``stringData`` is merged into ``data`` (base64) and never returned
    (https://kubernetes.io/docs/concepts/configuration/secret/#restriction-names-data).
    """
    if obj.get("kind") == "Secret" and obj.get("stringData"):
        data = obj.setdefault("data", {}) or {}
        for key, value in obj.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data
    return obj


class Store:
    """Objects by ``(resource, namespace, name)``, with field owners and a change log."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.objects: dict[tuple[Resource, str | None, str], dict] = {}
        self.owners: dict[tuple, dict[str, set[tuple]]] = {}   # key -> manager -> leaf paths it applied
        self.log: list[tuple[int, str, Resource, dict]] = []   # (resourceVersion, ADDED|MODIFIED|DELETED, …)
        self.revision = 0

    # -- reading -------------------------------------------------------------
    def get(self, resource: Resource, namespace: str | None, name: str) -> dict | None:
        with self.changed:
            obj = self.objects.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource: Resource, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict]:
        labels = selectors.parse_labels(label_selector)
        fields = selectors.parse_fields(field_selector, resource.plural)
        with self.changed:
            # etcd returns a list in key order: namespace, then name.
            items = sorted(self.objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2]))
            found = [copy.deepcopy(o) for (r, ns, _), o in items
                     if r == resource and (namespace is None or ns == namespace)]
        return [o for o in found if selectors.matches(o, labels, fields)]

    def of_kind(self, kind: str) -> list[dict]:
        with self.changed:
            return [copy.deepcopy(o) for (r, _, _), o in self.objects.items() if r.kind == kind]

    # -- writing -------------------------------------------------------------
    def _record(self, kind: str, resource: Resource, obj: dict) -> None:
        self.log.append((self.revision, kind, resource, copy.deepcopy(obj)))
        self.changed.notify_all()

    def _stamp(self, obj: dict, old: dict | None) -> None:
        self.revision += 1
        meta = obj.setdefault("metadata", {})
        if old is None:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            meta["generation"] = 1
        else:
            for key in ("uid", "creationTimestamp", "generation"):
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]
            if old.get("spec") != obj.get("spec"):
                meta["generation"] = old["metadata"].get("generation", 1) + 1
            if "status" in old and "status" not in obj:
                obj["status"] = copy.deepcopy(old["status"])
        meta["resourceVersion"] = str(self.revision)

    def _check_namespace(self, resource: Resource, namespace: str | None) -> None:
        if resource.namespaced:
            ns_resource = by_kind("v1", "Namespace")
            if (ns_resource, None, namespace) not in self.objects:
                raise status.namespace_not_found(namespace)

    def put(self, obj: dict, manager: str = "kubectl") -> dict:
        """Create or replace an object as another client would (seeding a test); ``manager`` owns its fields."""
        resource = by_kind(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        key = (resource, meta.get("namespace") if resource.namespaced else None, meta["name"])
        with self.changed:
            obj = normalize(copy.deepcopy(obj))
            old = self.objects.get(key)
            self._stamp(obj, old)
            self.objects[key] = obj
            self.owners.setdefault(key, {})[manager] = set(leaf_paths(obj))
            self._record("MODIFIED" if old else "ADDED", resource, obj)
            return copy.deepcopy(obj)

    def create(self, resource: Resource, namespace: str | None, obj: dict, manager: str = "") -> dict:
        name = (obj.get("metadata") or {}).get("name")
        key = (resource, namespace, name)
        with self.changed:
            self._check_namespace(resource, namespace)
            if key in self.objects:
                raise status.already_exists(resource, name)
            obj = normalize(copy.deepcopy(obj))
            if resource.namespaced:
                obj["metadata"]["namespace"] = namespace
            self._stamp(obj, None)
            self.objects[key] = obj
            self.owners[key] = {manager or "unknown": set(leaf_paths(obj))}
            self._record("ADDED", resource, obj)
            return copy.deepcopy(obj)

    def update_status(self, resource: Resource, namespace: str | None, name: str, new_status: dict) -> None:
        """What a controller does through the status subresource (no field owner changes)."""
        key = (resource, namespace, name)
        with self.changed:
            obj = self.objects.get(key)
            if obj is None or obj.get("status") == new_status:
                return
            obj = copy.deepcopy(obj)
            obj["status"] = copy.deepcopy(new_status)
            self.revision += 1
            obj["metadata"]["resourceVersion"] = str(self.revision)
            self.objects[key] = obj
            self._record("MODIFIED", resource, obj)

    def controller_update(self, resource: Resource, namespace: str | None, name: str, change) -> None:
        """A controller's update: ``change(obj)`` edits a copy in place (its fields get no apply owner)."""
        key = (resource, namespace, name)
        with self.changed:
            old = self.objects.get(key)
            if old is None:
                return
            obj = copy.deepcopy(old)
            change(obj)
            if obj == old:
                return
            self._stamp(obj, old)
            self.objects[key] = obj
            self._record("MODIFIED", resource, obj)

    def apply(self, resource: Resource, namespace: str | None, name: str, applied: dict, manager: str,
              force: bool) -> tuple[dict, bool]:
        """Server-side apply ``applied`` for ``manager``; return ``(object, created)``."""
        key = (resource, namespace, name)
        with self.changed:
            old = self.objects.get(key)
            if old is None:
                self._check_namespace(resource, namespace)
            new_fields = leaf_paths(applied)
            owners = self.owners.setdefault(key, {})
            conflicts = [(other, "." + ".".join(map(str, path)))
                         for other, paths in owners.items() if other != manager
                         for path in sorted(paths & set(new_fields), key=str)
                         if old is not None and _get_path(old, path) != new_fields[path]]
            if conflicts and not force:
                raise status.apply_conflict(resource, name, conflicts)
            obj = copy.deepcopy(old) if old is not None else {"apiVersion": applied["apiVersion"],
                                                               "kind": applied["kind"],
                                                               "metadata": {"name": name}}
            if resource.namespaced:
                obj["metadata"]["namespace"] = namespace
            # Fields this manager applied before and applies no more are removed,
            # unless another manager also owns them.
            others = set().union(*[p for m, p in owners.items() if m != manager]) if owners else set()
            for path in owners.get(manager, set()) - set(new_fields) - others:
                _del_path(obj, path)
            for path, value in new_fields.items():
                _set_path(obj, path, value)
            normalize(obj)
            for other in list(owners):   # forced fields change owner
                if other != manager:
                    owners[other] -= set(new_fields)
            owners[manager] = set(new_fields)
            self._stamp(obj, old)
            self.objects[key] = obj
            self._record("MODIFIED" if old else "ADDED", resource, obj)
            return copy.deepcopy(obj), old is None

    def patch(self, resource: Resource, namespace: str | None, name: str, patch_type: str, patch) -> dict:
        key = (resource, namespace, name)
        with self.changed:
            old = self.objects.get(key)
            if old is None:
                raise status.not_found(resource, name)
            try:
                if patch_type == "application/json-patch+json":
                    obj = json_patch(old, patch)
                else:
                    obj = merge_patch(old, patch)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise status.ApiError(422, "Invalid", f"the server rejected our request due to an error in our "
                                      f"request: {exc}") from None
            normalize(obj)
            self._stamp(obj, old)
            self.objects[key] = obj
            self._record("MODIFIED", resource, obj)
            return copy.deepcopy(obj)

    def delete(self, resource: Resource, namespace: str | None, name: str) -> dict:
        key = (resource, namespace, name)
        with self.changed:
            obj = self.objects.pop(key, None)
            if obj is None:
                raise status.not_found(resource, name)
            self.owners.pop(key, None)
            self.revision += 1
            obj["metadata"]["resourceVersion"] = str(self.revision)
            self._record("DELETED", resource, obj)
            if resource.kind == "Namespace":
                for other in [k for k in self.objects if k[0].namespaced and k[1] == name]:
                    self.delete(*other)
            return copy.deepcopy(obj)

    # -- watching --------------------------------------------------------------
    def changes_after(self, revision: int) -> list[tuple[int, str, Resource, dict]]:
        with self.changed:
            return [c for c in self.log if c[0] > revision]

    def wait_for_change(self, revision: int, timeout_s: float) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.revision > revision, timeout=timeout_s)
