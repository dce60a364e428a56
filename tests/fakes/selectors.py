"""Label and field selectors, matched as the API server matches them on a list or watch.

Label selectors (``labelSelector=``): the grammar of
staging/src/k8s.io/apimachinery/pkg/labels/selector.go (``Parse``) and
https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors:
requirements joined by commas, each ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``,
``k notin (a,b)``, ``k`` or ``!k``. ``k!=v`` and ``notin`` also match objects
without the label.

Field selectors (``fieldSelector=``): ``f=v``, ``f==v``, ``f!=v`` joined by commas,
on the fields each resource makes selectable
(https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/;
for Events pkg/registry/core/event/strategy.go ``ToSelectableFields``, for Pods
pkg/registry/core/pod/strategy.go). Any other field is refused with
``field label not supported: …`` (400), as the real server does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

COMMON_FIELDS = ("metadata.name", "metadata.namespace")
SELECTABLE_FIELDS = {
    "events": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
               "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
               "reason", "reportingComponent", "source", "type"),
    "pods": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
             "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    "secrets": ("type",),
    "namespaces": ("status.phase",),
    "nodes": ("spec.unschedulable",),
    "replicasets": ("status.replicas",),
}


class SelectorError(ValueError):
    """The selector does not parse or names a field the resource cannot select on (a 400)."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str            # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values   # "!=" and "notin"


_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_labels(text: str | None) -> list[Requirement]:
    """Parse a label selector; raise SelectorError as the server's 400 would."""
    if not text:
        return []
    out = []
    for part in _split_top_level(text):
        m = re.fullmatch(rf"({_KEY})\s+(in|notin)\s+\((.*)\)", part)
        if m:
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            if not values:
                raise SelectorError(f"unable to parse requirement: for 'in', 'notin' operators, values set "
                                    f"can't be empty: {part!r}")
            out.append(Requirement(m.group(1), m.group(2), values))
            continue
        m = re.fullmatch(rf"({_KEY})\s*(==|!=|=)\s*({_VALUE})", part)
        if m:
            op = "!=" if m.group(2) == "!=" else "="
            out.append(Requirement(m.group(1), op, (m.group(3),)))
            continue
        m = re.fullmatch(rf"(!?)\s*({_KEY})", part)
        if m:
            out.append(Requirement(m.group(2), "!exists" if m.group(1) else "exists"))
            continue
        raise SelectorError(f"unable to parse requirement: found '{part}', expected: identifier")
    return out


def parse_fields(text: str | None, plural: str) -> list[tuple[str, str, str]]:
    """Parse a field selector into ``(field, op, value)``; refuse fields the resource cannot select on."""
    if not text:
        return []
    allowed = COMMON_FIELDS + SELECTABLE_FIELDS.get(plural, ())
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        m = re.fullmatch(r"([^=!]+?)\s*(==|!=|=)\s*(.*)", part)
        if not m:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if field not in allowed:
            raise SelectorError(f'field label not supported: {field}')
        out.append((field, "!=" if op == "!=" else "=", value))
    return out


def field_value(obj: dict, field: str) -> str:
    """A field's value as the server compares it (a string; absent is the empty string)."""
    node = obj
    for part in field.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, bool):
        return "true" if node else "false"
    return "" if node is None else str(node)


def matches(obj: dict, labels: list[Requirement], fields: list[tuple[str, str, str]]) -> bool:
    obj_labels = (obj.get("metadata") or {}).get("labels") or {}
    if not all(r.matches(obj_labels) for r in labels):
        return False
    for field, op, value in fields:
        equal = field_value(obj, field) == value
        if equal != (op == "="):
            return False
    return True
