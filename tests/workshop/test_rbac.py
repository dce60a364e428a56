"""The participants' access: what the labs read, the tunnel and the key, and nothing that changes the shared system.

Verbs per operation, from the Kubernetes docs ("Authorization: Determine the
request verb"): reading one object is ``get``, a collection ``list`` (``watch``
for ``-w``), server-side apply is ``patch`` (and ``create`` for a new object),
deleting is ``delete``; logs are ``get`` on ``pods/log``; port-forwarding is
``create`` on ``pods/portforward`` (``get`` for the WebSocket upgrade). RBAC
only adds permissions; ``resourceNames`` narrows a rule to named objects
("Referring to resources" in the RBAC docs). The evaluator below follows those
two rules and nothing else.
"""
from __future__ import annotations

import pytest

from llmserve.core import names
from llmserve.world import manifests
from tests.support import participant_by_hand_reads

FILE = "examples/workshop/participant-rbac.yaml"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
#: (apiGroup, resource) of each kind the course's system is made of (manifests/base).
RESOURCE_OF_KIND = {"Namespace": ("", "namespaces"), "PersistentVolume": ("", "persistentvolumes"),
                    "PersistentVolumeClaim": ("", "persistentvolumeclaims"), "Secret": ("", "secrets"),
                    "Deployment": ("apps", "deployments"), "Service": ("", "services")}

def _objects():
    return {o["kind"]: o for o in manifests.load(FILE)}


def allowed(rules: list[dict], verb: str, group: str, resource: str, name: str | None = None) -> bool:
    """Would these rules allow the request (the union of rules; resourceNames limit a rule to those names)?"""
    for rule in rules:
        names_ok = not rule.get("resourceNames") or (name is not None and name in rule["resourceNames"])
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"] and names_ok:
            return True
    return False


def test_file_is_strictly_valid():
    assert manifests.validate(manifests.load(FILE)) == []


def test_the_read_only_commands_the_labs_print_work_for_participants():
    objs = _objects()
    rules = objs["Role"]["rules"] + objs["ClusterRole"]["rules"]
    refused = [f"{cmd}: {verb} {group or 'core'}/{resource}{' ' + name if name else ''}"
               for cmd, needs in participant_by_hand_reads().items() for verb, group, resource, name in needs
               if not allowed(rules, verb, group, resource, name)]
    assert refused == [], "participants would be refused:\n" + "\n".join(refused)
    # The commands are the ones the labs print (a command the labs no longer print leaves this list).
    from llmserve.observability import order
    assert any("get hpa" in line and "--watch" in line for stage in order.STAGE_NAMES for line in order.by_hand(stage))


def test_participants_can_read_the_api_key_and_no_other_secret():
    rules = _objects()["Role"]["rules"]
    key = names.system().api_key_secret
    assert allowed(rules, "get", "", "secrets", key)
    assert not allowed(rules, "get", "", "secrets", "another-secret")
    assert not allowed(rules, "list", "", "secrets")      # a list would show every Secret's data


@pytest.mark.parametrize("kind", sorted(RESOURCE_OF_KIND))
def test_no_participant_can_change_or_delete_what_the_room_shares(kind):
    """The claim, the Deployment, the Secret, the Service (and the PV, the namespace): no write verb at all."""
    objs = _objects()
    shared = next(o for o in names.base_objects() if o["kind"] == kind)
    group, resource = RESOURCE_OF_KIND[kind]
    rules = objs["Role"]["rules"] + objs["ClusterRole"]["rules"]
    for verb in WRITE_VERBS:
        assert not allowed(rules, verb, group, resource, shared["metadata"]["name"]), (verb, kind)


def test_the_only_write_is_opening_a_tunnel():
    writes = [(g, r, v) for rule in _objects()["Role"]["rules"] for g in rule["apiGroups"]
              for r in rule["resources"] for v in rule["verbs"] if v in WRITE_VERBS]
    assert writes == [("", "pods/portforward", "create")]
    # No exec, attach or wildcard: a participant cannot run commands in the vLLM Pod.
    for rule in _objects()["Role"]["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert not {"pods/exec", "pods/attach", "pods/ephemeralcontainers"} & set(rule["resources"])


def test_cluster_objects_are_read_only_through_a_cluster_role():
    objs = _objects()
    granted = {(g, r, v) for rule in objs["ClusterRole"]["rules"] for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
    # The volume, the Nodes and the StorageClasses the labs read, the CRDs and the metrics API the
    # full-stack lab's preflight looks for: reads only, narrowed by name wherever the API allows it.
    assert granted <= {(g, r, v) for g, r in [("", "persistentvolumes"), ("", "nodes"),
                                              ("storage.k8s.io", "storageclasses"),
                                              ("apiextensions.k8s.io", "customresourcedefinitions"),
                                              ("apiregistration.k8s.io", "apiservices")] for v in ("get", "list")}
    assert allowed(objs["ClusterRole"]["rules"], "get", "", "persistentvolumes", names.system().pv)
    assert not allowed(objs["ClusterRole"]["rules"], "get", "", "persistentvolumes", "someone-elses-volume")
    assert not allowed(objs["ClusterRole"]["rules"], "list", "", "persistentvolumes")
    # Both bindings point at the same ServiceAccount the kubeconfig token is made for.
    sa = objs["ServiceAccount"]["metadata"]
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        [subject] = objs[kind]["subjects"]
        assert (subject["kind"], subject["name"], subject["namespace"]) == ("ServiceAccount", sa["name"],
                                                                            sa["namespace"])
    assert objs["RoleBinding"]["roleRef"]["name"] == objs["Role"]["metadata"]["name"]
    assert objs["ClusterRoleBinding"]["roleRef"]["name"] == objs["ClusterRole"]["metadata"]["name"]


def test_every_object_carries_the_course_label():
    for o in manifests.load(FILE):
        assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "vllm-course"


def test_the_evaluator_bites():
    """The checks above would catch a rule that grants delete on deployments, or a Secret without resourceNames."""
    bad = [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "delete"]},
           {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    assert allowed(bad, "delete", "apps", "deployments", names.system().deployment)
    assert allowed(bad, "get", "", "secrets", "another-secret")
