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
import shutil

import nbformat
import pytest

from llmserve.core.names import system
from llmserve.world import manifests
from tests.fakes import observe_rbac, rbac
from tests.fakes.recorded import Request
from tests.support import participant_by_hand_reads, REPO

RBAC_FILE = "examples/workshop/participant-rbac.yaml"
WRITES = {"create", "patch", "update", "delete", "deletecollection"}
CONNECTS = {"pods/portforward"}     # create + get on the WebSocket upgrade: a tunnel, not a change
NAMESPACE = "ai-platform"


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


def _is_read(a: rbac.Access) -> bool:
    return a.verb not in WRITES or a.resource in CONNECTS


# -- the observation is complete and current ------------------------------------------------
def test_the_observation_covers_every_lab_notebook():
    assert sorted(_observation()["labs"]) == [p.stem for p in observe_rbac.lab_notebooks()], \
        f"a lab notebook was added or removed: run {observe_rbac.REFRESH}"


# Cells that act on the cluster and fail live for a reason outside the fakes, each with its fix. The
# requests after the failure were never observed; the test below fails when one is fixed (remove it
# here and observe again) or a new one appears. Keyed by (lab, error, first line): cell numbers move.
KNOWN_FAILURES: dict = {
    ("full-stack-lab", "ClusterError", "for stage in order.STAGE_NAMES:"):
        "the fake box has no Prometheus operator, so PodMonitor has no API (the preflight cell says so); "
        "the stages after it are the instructor's writes, refused for participants anyway",
    ("full-stack-lab", "ServerError", "answer = stack.query()"):
        "the stand-in vLLM (tests/fakes/vllm.py) serves no chat completions (501); the port-forward to "
        "the router before it is observed",
    ("full-stack-lab", "KeyboardInterrupt", "from llmserve.observability import plots"):
        "the load waits for an HPA to add a replica and the fakes run no HPA controller: the cell is cut "
        "at observe_rbac.CELL_TIMEOUT_BY_LAB after its first reads",
    ("full-stack-lab", "ClusterError", 'for line in order.by_hand("cleanup"):'):
        "the cleanup reaches the PrometheusRule, whose API is absent for the same reason",
}


def test_no_cell_that_acts_on_the_cluster_failed_while_observing():
    failed = {(lab, c["error"], c["first_line"]): f"{lab} cell {c['cell']} ({c['error']}: {c.get('message', '')})"
              for lab, seen in _observation()["labs"].items() for c in seen["failed_cells"] if c["talks_to_cluster"]}
    new = [text for key, text in failed.items() if key not in KNOWN_FAILURES]
    fixed = [key for key in KNOWN_FAILURES if key not in failed]
    assert new == [], ("these cells failed against the fake cluster, so the requests after them were never "
                       f"observed; fix them and run {observe_rbac.REFRESH}:\n" + "\n".join(new))
    assert fixed == [], f"these no longer fail: remove them from KNOWN_FAILURES: {fixed}"


def test_the_stored_observation_is_fresh():
    # Cheap stand-in for re-running every lab (~10 min): the sha256 of what decided the requests.
    stale = observe_rbac.stale_sources(_observation())
    assert stale == {}, (f"changed since the labs were observed; run {observe_rbac.REFRESH} (or add --lab NAME "
                         "per lab) and review the diff:\n"
                         + "\n".join(f"{lab}: {', '.join(paths)}" for lab, paths in stale.items()))


def test_the_observation_records_the_sources_that_decide_the_requests():
    sources = observe_rbac.sources("stack-lab")
    assert "notebooks/stack-lab.ipynb" in sources
    for module in ("world/cluster.py", "world/portforward.py", "world/mode.py", "stack/apply.py",
                   "storage/live.py", "deployment/live.py", "service/live.py", "security/live.py",
                   "observability/finale.py", "routing/experiment.py"):
        assert f"llmserve/{module}" in sources, module
    assert "manifests/base/vllm-deployment.yaml" in sources
    assert "tests/fakes/rbac.py" in sources
    # Pure rules cannot send a request: a change there does not call for a new observation.
    assert not any(p.endswith(("rules.py", "budgets.py", "order.py", "panel.py")) for p in sources)


@pytest.fixture
def tree(tmp_path):
    """A copy of what the sources are read from, to change without touching the checkout."""
    for part in ("notebooks", "llmserve", *observe_rbac.MANIFEST_DIRS):
        shutil.copytree(REPO / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_*"))
    for f in observe_rbac.OBSERVER_FILES:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / f, tmp_path / f)
    return tmp_path


def _observed_now(root) -> dict:
    shared = observe_rbac.shared_sources(root)
    return {"labs": {p.stem: {"sources": observe_rbac.sources(p.stem, root, shared)}
                     for p in observe_rbac.lab_notebooks(root)}}


def _edit_cell(path, cell_type: str, text: str) -> None:
    nb = nbformat.read(path, as_version=4)
    next(c for c in nb.cells if c.cell_type == cell_type).source += text
    nbformat.write(nb, path)


def test_the_freshness_check_bites_on_a_changed_code_cell(tree):
    observed = _observed_now(tree)
    assert observe_rbac.stale_sources(observed, tree) == {}
    _edit_cell(tree / "notebooks/storage-lab.ipynb", "markdown", "\nA new sentence.")
    assert observe_rbac.stale_sources(observed, tree) == {}, "markdown cannot change a request"
    _edit_cell(tree / "notebooks/storage-lab.ipynb", "code", "\ncluster.apply(volume)")
    assert observe_rbac.stale_sources(observed, tree) == {"storage-lab": ["notebooks/storage-lab.ipynb: changed"]}


def test_the_freshness_check_bites_on_the_client_code_and_the_manifests(tree):
    observed = _observed_now(tree)
    with (tree / "llmserve/world/cluster.py").open("a") as f:
        f.write("\n# a change\n")
    stale = observe_rbac.stale_sources(observed, tree)
    assert sorted(stale) == sorted(observed["labs"])             # every lab uses the client
    assert stale["stack-lab"] == ["llmserve/world/cluster.py: changed"]
    observed = _observed_now(tree)
    (tree / "llmserve/kvcache/live.py").write_text("from llmserve.world.cluster import Cluster\n")
    (tree / "manifests/overlays/gpu-box/kustomization.yaml").write_text("resources: []\n")
    assert observe_rbac.stale_sources(observed, tree)["kv-cache-lab"] == [
        "llmserve/kvcache/live.py: new", "manifests/overlays/gpu-box/kustomization.yaml: changed"]


def test_the_freshness_check_bites_on_a_lab_removed(tree):
    observed = _observed_now(tree)
    (tree / "notebooks/routing-lab.ipynb").unlink()
    assert observe_rbac.stale_sources(observed, tree) == {"routing-lab": ["notebooks/routing-lab.ipynb: gone"]}


# -- the grants against the observation -------------------------------------------------------
def test_every_read_the_labs_send_is_granted_to_participants():
    rules = _participant_rules()
    missing = [f"{a}  (needed by {', '.join(labs)})" for a, labs in _needed().items()
               if _is_read(a) and not rbac.allowed(a, rules)]
    assert missing == [], "participants would be refused these reads:\n" + "\n".join(missing)


def test_no_write_the_labs_send_is_granted_to_participants():
    # The room shares one claim, Deployment, Secret and Service: a participant's apply or cleanup must be refused.
    rules = _participant_rules()
    granted = [f"{a}  (sent by {', '.join(labs)})" for a, labs in _needed().items()
               if not _is_read(a) and rbac.allowed(a, rules)]
    assert granted == [], "participants may change what the room shares:\n" + "\n".join(granted)


def test_no_write_of_any_kind_is_granted_to_participants():
    # Not only the writes observed: a rule with a write verb (or "*") would let a participant change the room.
    writes = [r for r in _participant_rules() if r.verbs & (WRITES | {"*"}) and not r.resources <= CONNECTS]
    assert writes == []


CLUSTER_SCOPED = {"persistentvolumes", "nodes", "storageclasses", "customresourcedefinitions", "apiservices"}


def _by_hand() -> list[rbac.Access]:
    """The reads of the kubectl commands the labs print for a step by hand (tests/support.py)."""
    namespace = system().namespace
    return [rbac.Access(verb, group, resource, None if resource in CLUSTER_SCOPED else namespace, name)
            for needs in participant_by_hand_reads().values() for verb, group, resource, name in needs]


def test_nothing_is_granted_that_no_lab_reads():
    # Least privilege: every rule is used by some observed read or by a read-only command the labs
    # print (kubectl get -w, rollout status), and names objects where the request does.
    needed = [a for a in _needed() if _is_read(a)] + _by_hand()
    unused = [r for r in _participant_rules()
              if not any(r.allows(a) for a in needed)]
    assert unused == [], "rules no lab needs:\n" + "\n".join(map(str, unused))
    for r in _participant_rules():
        for verb in r.verbs:
            for resource in r.resources:
                used = [a for a in needed if a.verb == verb and a.resource == resource and r.allows(a)]
                assert used, f"{verb} {resource} is granted but no lab sends it and no by-hand command needs it"


def test_the_labs_do_send_writes_reads_and_port_forwards():
    # Guards the tests above against an observation that saw nothing.
    verbs = {(a.verb, a.resource) for a in _needed()}
    assert ("patch", "deployments") in verbs and ("create", "pods/portforward") in verbs
    assert ("list", "pods") in verbs and ("get", "pods/log") in verbs
    assert ("list", "nodes") in verbs and ("list", "storageclasses") in verbs   # issue 15's two misses


def test_a_port_forward_to_a_vllm_pod_is_granted():
    rules = _participant_rules()
    for verb in ("get", "create"):
        assert rbac.allowed(rbac.Access(verb, "", "pods/portforward", NAMESPACE, rbac.MADE_BY_CONTROLLERS), rules)
    assert not rbac.allowed(rbac.Access("create", "", "pods/portforward", "kube-system", "coredns-1"), rules)


def test_participants_read_only_the_api_key_secret():
    rules = _participant_rules()
    assert rbac.allowed(_access("get", "secrets", name="vllm-api-key"), rules)
    assert not rbac.allowed(_access("get", "secrets", name="another-secret"), rules)
    assert not rbac.allowed(_access("list", "secrets"), rules)


# -- the rule matching itself ---------------------------------------------------------------
def _access(verb, resource, namespace=NAMESPACE, name=None, group=""):
    return rbac.Access(verb, group, resource, namespace, name)


def test_resource_names_limit_get_but_never_grant_a_list_without_a_name():
    rule = rbac.Rule(frozenset({""}), frozenset({"secrets"}), frozenset({"get", "list"}),
                     frozenset({"vllm-api-key"}), NAMESPACE)
    assert rule.allows(_access("get", "secrets", name="vllm-api-key"))
    assert not rule.allows(_access("get", "secrets", name="other"))
    assert not rule.allows(_access("list", "secrets"))
    assert not rule.allows(_access("get", "secrets", name=rbac.MADE_BY_CONTROLLERS))
    # a list narrowed to the name by `--field-selector metadata.name=…` is authorized by it (RBAC docs)
    assert rule.allows(_access("list", "secrets", name="vllm-api-key"))
    delete_all = rbac.Rule(frozenset({""}), frozenset({"secrets"}), frozenset({"deletecollection"}),
                           frozenset({"vllm-api-key"}), NAMESPACE)
    assert not delete_all.allows(_access("deletecollection", "secrets", name="vllm-api-key"))


def test_a_list_takes_its_name_from_a_metadata_name_field_selector():
    def listing(selector):
        query = {"fieldSelector": [selector]} if selector else {}
        return Request("GET", "/api/v1/namespaces/ns/secrets", query, {}, b"", verb="list", resource="secrets",
                       namespace="ns")
    names = [a.name for r in ("metadata.name=k", "type=Opaque,metadata.name==k", "metadata.name!=k", None)
             for a in rbac.accesses([listing(r)])]
    assert names == ["k", "k", None, None]


def test_a_role_grants_only_in_its_namespace_and_a_cluster_role_everywhere():
    objects = manifests.load(RBAC_FILE)
    rules = _participant_rules()
    role_ns = next(o for o in objects if o["kind"] == "Role")["metadata"]["namespace"]
    assert rbac.allowed(_access("list", "pods", role_ns), rules)
    assert not rbac.allowed(_access("list", "pods", "kube-system"), rules)
    assert not rbac.allowed(_access("list", "pods", None), rules)
    assert rbac.allowed(_access("list", "nodes", None), rules)           # the ClusterRole: cluster scope


def test_only_the_bound_subject_gets_the_rules():
    assert rbac.rules_of(manifests.load(RBAC_FILE), ("ServiceAccount", "someone-else", NAMESPACE)) == []


def test_requests_become_the_checks_rbac_makes():
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
