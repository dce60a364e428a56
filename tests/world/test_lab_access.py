"""The access the labs really need, against the workshop's participant RBAC.

What the labs need is not written by hand: ``tests/fakes/observed_rbac.json`` is
what every lab notebook's live cells sent to the recording fake API server
(``python -m tests.fakes.observe_rbac --write``; :mod:`tests.fakes.observe_rbac`).
The participant RBAC (manifests/examples/workshop/participant-rbac.yaml) is
read-only on purpose: one shared vLLM, which the instructor owns, so every
write a lab sends (apply, cleanup, deleting a Pod) must be refused for
participants, and every read must be granted, or the lab breaks for them.
A port-forward is a connect (``create`` on pods/portforward), not a write: granted.
"""
from __future__ import annotations

import json

import pytest

from llmserve.world import manifests
from tests.fakes import observe_rbac, rbac

RBAC_FILE = "examples/workshop/participant-rbac.yaml"
WRITES = {"create", "patch", "update", "delete", "deletecollection"}
CONNECTS = {"pods/portforward"}     # create + get on the WebSocket upgrade: a tunnel, not a change


def _observation() -> dict:
    return json.loads(observe_rbac.OBSERVED.read_text(encoding="utf-8"))


def _participant_rules() -> list[rbac.Rule]:
    objects = manifests.load(RBAC_FILE)
    sa = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]
    return rbac.rules_of(objects, ("ServiceAccount", sa["name"], sa["namespace"]))


def _needed() -> dict[rbac.Access, list[str]]:
    out: dict[rbac.Access, list[str]] = {}
    for lab, seen in _observation()["labs"].items():
        for a in seen["access"]:
            out.setdefault(rbac.Access.from_json(a), []).append(lab)
    return out


def test_the_observation_covers_every_lab_notebook():
    assert sorted(_observation()["labs"]) == [p.stem for p in observe_rbac.lab_notebooks()], \
        "a lab notebook was added or removed: run python -m tests.fakes.observe_rbac --write"


def test_no_cell_that_acts_on_the_cluster_failed_while_observing():
    failed = [f"{lab} cell {c['cell']} ({c['error']}): {c['first_line']}"
              for lab, seen in _observation()["labs"].items() for c in seen["failed_cells"] if c["talks_to_cluster"]]
    assert failed == [], ("these cells failed against the fake cluster, so the requests after them were never "
                          "observed; fix them and run python -m tests.fakes.observe_rbac --write:\n"
                          + "\n".join(failed))


def test_every_read_the_labs_send_is_granted_to_participants():
    rules = _participant_rules()
    missing = [f"{a}  (needed by {', '.join(labs)})" for a, labs in _needed().items()
               if (a.verb not in WRITES or a.resource in CONNECTS) and not rbac.allowed(a, rules)]
    assert missing == [], "participants would be refused these reads:\n" + "\n".join(missing)


def test_no_write_the_labs_send_is_granted_to_participants():
    # The room shares one claim, Deployment, Secret and Service: a participant's apply or cleanup must be refused.
    rules = _participant_rules()
    granted = [f"{a}  (sent by {', '.join(labs)})" for a, labs in _needed().items()
               if a.verb in WRITES and a.resource not in CONNECTS and rbac.allowed(a, rules)]
    assert granted == [], "participants may change what the room shares:\n" + "\n".join(granted)


def test_the_labs_do_send_writes_and_port_forwards():
    # Guards the two tests above against an observation that saw nothing.
    verbs = {(a.verb, a.resource) for a in _needed()}
    assert ("patch", "deployments") in verbs and ("create", "pods/portforward") in verbs
    assert ("list", "pods") in verbs and ("get", "pods/log") in verbs


# -- the rule matching itself ---------------------------------------------------------------
def _access(verb, resource, namespace="ai-platform", name=None, group=""):
    return rbac.Access(verb, group, resource, namespace, name)


def test_resource_names_limit_get_but_never_grant_list():
    rule = rbac.Rule(frozenset({""}), frozenset({"secrets"}), frozenset({"get", "list"}),
                     frozenset({"vllm-api-key"}), "ai-platform")
    assert rule.allows(_access("get", "secrets", name="vllm-api-key"))
    assert not rule.allows(_access("get", "secrets", name="other"))
    assert not rule.allows(_access("list", "secrets"))
    assert not rule.allows(_access("get", "secrets", name=rbac.MADE_BY_CONTROLLERS))


def test_a_role_grants_only_in_its_namespace_and_a_cluster_role_everywhere():
    objects = manifests.load(RBAC_FILE)
    rules = _participant_rules()
    role_ns = next(o for o in objects if o["kind"] == "Role")["metadata"]["namespace"]
    assert rbac.allowed(_access("list", "pods", role_ns), rules)
    assert not rbac.allowed(_access("list", "pods", "kube-system"), rules)
    assert not rbac.allowed(_access("list", "pods", None), rules)
    assert rbac.allowed(_access("get", "persistentvolumes", None, "model-storage"), rules)


def test_only_the_bound_subject_gets_the_rules():
    assert rbac.rules_of(manifests.load(RBAC_FILE), ("ServiceAccount", "someone-else", "ai-platform")) == []


def test_requests_become_the_checks_rbac_makes():
    from tests.fakes.apiserver import Request
    apply_new = Request("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d", {}, {}, b"", verb="patch",
                        group="apps", resource="deployments", namespace="ns", name="d", created=True)
    tunnel = Request("GET", "/api/v1/namespaces/ns/pods/p-1/portforward", {}, {}, b"", verb="get",
                     resource="pods", subresource="portforward", namespace="ns", name="p-1")
    discovery = Request("GET", "/apis", {}, {}, b"")
    assert rbac.accesses([apply_new, tunnel, discovery]) == [
        rbac.Access("create", "", "pods/portforward", "ns", rbac.MADE_BY_CONTROLLERS),
        rbac.Access("get", "", "pods/portforward", "ns", rbac.MADE_BY_CONTROLLERS),
        rbac.Access("create", "apps", "deployments", "ns", "d"),
        rbac.Access("patch", "apps", "deployments", "ns", "d")]


# -- the observation is current ---------------------------------------------------------------
@pytest.mark.slow
def test_the_stored_observation_is_what_the_labs_send_now():
    # Runs every lab notebook live against the fake (about 90 s on 2 cores).
    assert observe_rbac.observe() == _observation(), \
        "the labs now send other requests: run python -m tests.fakes.observe_rbac --write and review the diff"
