"""``metav1.Status`` failure bodies, worded as the API server words them.

The constructors and messages follow
staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go (``NewNotFound``:
``<resource> "<name>" not found`` with ``details.kind`` the resource's plural,
``NewAlreadyExists``, ``NewConflict``, ``NewInvalid``, ``NewBadRequest``,
``NewForbidden``, ``NewMethodNotSupported``) and the response shape in
https://kubernetes.io/docs/reference/using-api/api-concepts/#response-status-kind.
The kubernetes Python client reads ``message``, ``reason`` and ``details`` from
this body (kubernetes/client/exceptions.py keeps it in ``ApiException.body``).
"""
from __future__ import annotations

import json


class ApiError(Exception):
    """A failure the fake answers with a Status body."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def body(self) -> dict:
        out = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            out["details"] = self.details
        return out

    def encoded(self) -> bytes:
        return json.dumps(self.body()).encode()


def _details(resource, name: str | None) -> dict:
    out = {"kind": resource.plural}
    if name:
        out["name"] = name
    if resource.group:
        out["group"] = resource.group
    return out


def not_found(resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource.qualified()} "{name}" not found', _details(resource, name))


def namespace_not_found(namespace: str) -> ApiError:
    # What the NamespaceLifecycle admission plugin answers for an object in a missing namespace.
    return ApiError(404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"})


def already_exists(resource, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{resource.qualified()} "{name}" already exists',
                    _details(resource, name))


def apply_conflict(resource, name: str, conflicts: list[tuple[str, str]]) -> ApiError:
    # Server-side apply: "Apply failed with N conflict(s): conflict with "<manager>": <field>"
    # (staging/src/k8s.io/apimachinery/pkg/util/managedfields/internal/conflict.go).
    words = "conflict" if len(conflicts) == 1 else "conflicts"
    lines = "\n".join(f'- conflict with "{manager}": {field}' for manager, field in conflicts)
    details = _details(resource, name)
    details["causes"] = [{"reason": "FieldManagerConflict", "message": f'conflict with "{m}"', "field": f}
                         for m, f in conflicts]
    return ApiError(409, "Conflict", f"Apply failed with {len(conflicts)} {words}: {lines}", details)


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """A 422; ``causes`` are ``(field, reason, message)``, e.g. ``("fieldManager", "FieldValueRequired", …)``."""
    qualified = f"{kind}.{group}" if group else kind
    text = ", ".join(f"{field}: {message}" for field, _, message in causes)
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {text}',
                    {"name": name, "group": group, "kind": kind,
                     "causes": [{"reason": r, "message": m, "field": f} for f, r, m in causes]})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden(user: str, verb: str, resource, namespace: str | None, name: str | None = None,
              subresource: str = "") -> ApiError:
    plural = f"{resource.plural}/{subresource}" if subresource else resource.plural
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    subject = f'{resource.qualified()} "{name}"' if name else resource.qualified()
    return ApiError(403, "Forbidden", f'{subject} is forbidden: User "{user}" cannot {verb} resource "{plural}" '
                    f'in API group "{resource.group}"{where}', _details(resource, name))


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"application/json-patch+json, application/merge-patch+json, "
                    f"application/apply-patch+yaml, application/strategic-merge-patch+json "
                    f"(got {content_type or 'no Content-Type'})")


def method_not_allowed(method: str, what: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"{method} is not supported on {what}")
