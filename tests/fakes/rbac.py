"""RBAC as the API server evaluates it, for comparing what the labs send with what a Role grants.

A request is allowed when one rule of a bound Role or ClusterRole matches its
API group, resource (``pods/log`` for a subresource), verb and, when the rule
lists ``resourceNames``, its object's name; a rule with resourceNames never
matches ``deletecollection`` or a ``create`` without a name, and matches ``list``
or ``watch`` only when the request names its object with the field selector
``metadata.name=<name>``
(https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources):
the API server's resolver takes the name of a list or watch from that selector
(staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go,
``FieldSelector.RequiresExactMatch("metadata.name")``).
A Role grants only in its own namespace; a ClusterRole bound by a
ClusterRoleBinding grants everywhere and on cluster-scoped resources.

Requests to non-resource URLs (``/version``, ``/api``, ``/apis``) are left out:
every authenticated user may read them through the default ``system:discovery``
and ``system:public-info-viewer`` ClusterRoles
(https://kubernetes.io/docs/reference/access-authn-authz/rbac/#discovery-roles).
"""
from __future__ import annotations

from dataclasses import dataclass

# Objects whose names the stand-in controllers invent: recorded as this, so the observation is the same each run.
MADE_BY_CONTROLLERS = "<made by a controller>"
INVENTED_NAMES = ("pods", "replicasets", "events", "endpointslices")


@dataclass(frozen=True, order=True)
class Access:
    """One authorization check: ``verb`` on ``group``/``resource`` in ``namespace`` (None: cluster scope)."""

    verb: str
    group: str
    resource: str
    namespace: str | None
    name: str | None

    def as_json(self) -> dict:
        return {"verb": self.verb, "group": self.group, "resource": self.resource,
                "namespace": self.namespace, "name": self.name}

    @classmethod
    def from_json(cls, d: dict) -> "Access":
        return cls(d["verb"], d["group"], d["resource"], d["namespace"], d["name"])

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else " (cluster scope)"
        group = self.group or "core"
        return f"{self.verb} {group}/{self.resource}{' ' + self.name if self.name else ''}{where}"


def selected_name(field_selector: str | None) -> str | None:
    """The name a list or watch asks for with ``metadata.name=<name>`` (or ``==``) among its field terms."""
    for term in (field_selector or "").split(","):
        key, sep, value = term.partition("==") if "==" in term else term.partition("=")
        if sep and not key.endswith("!") and key.strip() == "metadata.name" and value.strip():
            return value.strip()
    return None


def accesses(requests) -> list[Access]:
    """The checks RBAC makes of each recorded request (:meth:`tests.fakes.apiserver.Request.authorized_as`)."""
    out = set()
    for r in requests:
        for verb, group, resource, namespace in r.authorized_as():
            name = r.name
            if name is None and verb in ("list", "watch"):
                name = selected_name(r.param("fieldSelector"))
            if name and resource.split("/")[0] in INVENTED_NAMES:
                name = MADE_BY_CONTROLLERS
            out.add(Access(verb, group, resource, namespace, name))
    return sorted(out, key=lambda a: (a.group, a.resource, a.verb, a.namespace or "", a.name or ""))


@dataclass(frozen=True)
class Rule:
    """One PolicyRule of a Role or ClusterRole, where its binding grants it."""

    groups: frozenset
    resources: frozenset
    verbs: frozenset
    names: frozenset           # empty: any name
    namespace: str | None      # None: a ClusterRole bound cluster-wide

    def allows(self, a: Access) -> bool:
        if self.namespace is not None and a.namespace != self.namespace:
            return False
        if not ({"*", a.group} & self.groups and {"*", a.resource} & self.resources and {"*", a.verb} & self.verbs):
            return False
        if self.names:   # a list or watch carries a name only when its field selector names one
            return a.name is not None and a.name != MADE_BY_CONTROLLERS and a.name in self.names \
                and a.verb != "deletecollection"
        return True


def rules_of(objects: list[dict], subject: tuple[str, str, str]) -> list[Rule]:
    """The rules bound to ``subject`` = ``(kind, name, namespace)`` by the RoleBindings and ClusterRoleBindings."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objects if o["kind"] in ("Role", "ClusterRole")}
    out = []
    for b in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        if not any((s.get("kind"), s.get("name"), s.get("namespace")) == subject for s in b.get("subjects") or []):
            continue
        ref = b["roleRef"]
        role_ns = b["metadata"].get("namespace") if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], role_ns, ref["name"]))
        if role is None:
            continue
        scope = b["metadata"].get("namespace") if b["kind"] == "RoleBinding" else None
        for rule in role.get("rules") or []:
            out.append(Rule(frozenset(rule.get("apiGroups") or []), frozenset(rule.get("resources") or []),
                            frozenset(rule.get("verbs") or []), frozenset(rule.get("resourceNames") or []), scope))
    return out


def allowed(a: Access, rules: list[Rule]) -> bool:
    """Whether any of ``rules`` grants ``a`` (RBAC only adds: no rule can deny)."""
    return any(r.allows(a) for r in rules)
