"""The workshop's participant RBAC grants what the labs do, and nothing cluster-wide beyond reading PVs.

Verbs per operation, from the Kubernetes docs ("Authorization: Determine the
request verb" and "Server-Side Apply"): reading one object is ``get``, reading a
collection ``list`` (``watch`` for ``-w``), server-side apply is ``patch`` (and
``create`` when the object does not exist yet), deleting is ``delete``; logs
are ``get`` on ``pods/log``; port-forwarding is ``create`` on
``pods/portforward`` (``get`` for the WebSocket upgrade).
"""
from __future__ import annotations

from llmserve.world import manifests

FILE = "examples/workshop/participant-rbac.yaml"

# (apiGroup, resource) -> verbs the labs need, from llmserve.world.cluster / llmserve.world.portforward:
NEEDED = {
    ("apps", "deployments"): {"get", "list", "create", "patch", "delete"},      # apply, read, cleanup
    ("", "services"): {"get", "list", "create", "patch", "delete"},
    ("", "persistentvolumeclaims"): {"get", "list", "create", "patch", "delete"},
    ("", "secrets"): {"get", "create", "patch", "delete"},                       # the API key Secret
    ("apps", "replicasets"): {"list"},                                          # Cluster.replicasets_of
    ("", "pods"): {"get", "list", "delete"},                                    # pods_of, delete_pod
    ("", "pods/log"): {"get"},                                                  # Cluster.logs
    ("", "pods/portforward"): {"create"},                                       # portforward.forward
    ("", "events"): {"list"},                                                   # Cluster.events, pod_events
    ("discovery.k8s.io", "endpointslices"): {"list"},                           # portforward.forward
}


def _objects():
    return {o["kind"]: o for o in manifests.load(FILE)}


def _grants(role):
    out = {}
    for rule in role["rules"]:
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                out.setdefault((g, r), set()).update(rule["verbs"])
    return out


def test_file_is_strictly_valid():
    assert manifests.validate(manifests.load(FILE)) == []


def test_role_grants_every_verb_the_labs_use_in_ai_platform():
    role = _objects()["Role"]
    assert role["metadata"]["namespace"] == "ai-platform"
    grants = _grants(role)
    for key, verbs in NEEDED.items():
        assert verbs <= grants.get(key, set()), f"{key}: missing {verbs - grants.get(key, set())}"


def test_nothing_beyond_the_labs():
    grants = _grants(_objects()["Role"])
    assert set(grants) == set(NEEDED), "a resource the labs never touch"
    for key, verbs in grants.items():
        assert "*" not in verbs and verbs <= {"get", "list", "watch", "create", "patch", "delete"}, key
        assert not ({"create", "patch", "delete"} & verbs) or not NEEDED[key].isdisjoint({"create", "patch", "delete"}), \
            f"{key}: write verbs on something the labs only read"


def test_persistent_volumes_are_read_only_through_a_cluster_role():
    objs = _objects()
    assert _grants(objs["ClusterRole"]) == {("", "persistentvolumes"): {"get", "list"}}
    # Both bindings point at the same ServiceAccount the kubeconfig token is made for.
    sa = objs["ServiceAccount"]["metadata"]
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        [subject] = objs[kind]["subjects"]
        assert (subject["kind"], subject["name"], subject["namespace"]) == ("ServiceAccount", sa["name"], sa["namespace"])
    assert objs["RoleBinding"]["roleRef"]["name"] == objs["Role"]["metadata"]["name"]
    assert objs["ClusterRoleBinding"]["roleRef"]["name"] == objs["ClusterRole"]["metadata"]["name"]


def test_every_object_carries_the_course_label():
    for o in manifests.load(FILE):
        assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "vllm-course"
