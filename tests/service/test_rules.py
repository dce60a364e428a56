"""service.rules: the Service ↔ Pod checks, DNS names, injected env vars and the by-hand commands.

Each case states the documented behaviour it checks. Sources:
- K8S_SERVICE: https://kubernetes.io/docs/concepts/services-networking/service/
- K8S_LABELS: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/
- K8S_DNS: https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/
- K8S_DEPLOY: https://kubernetes.io/docs/concepts/workloads/controllers/deployment/
- KUBELET_ENV: kubernetes/kubernetes pkg/kubelet/envvars/envvars.go
- VLLM_ENV: https://docs.vllm.ai/en/stable/configuration/env_vars/ and vllm/envs.py (0.32.0)
"""
from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path

import pytest

from llmserve.core.names import system
from llmserve.service import rules as services
from llmserve.world import manifests, mode
from llmserve.core.errors import InputError

EXAMPLES = sorted(Path(manifests.MANIFESTS_DIR, "examples", "service").glob("*.yaml"))


@pytest.fixture()
def svc():
    return manifests.load_one("base/vllm-service.yaml")


@pytest.fixture()
def dep():
    return manifests.load_one("base/vllm-deployment.yaml")


def _finding(report, check, level=None):
    found = [f for f in report.findings if f.check == check and (level is None or f.level == level)]
    assert found, f"no {check} finding ({level}) in:\n{report}"
    return found[0]


# -- the course's own pair -----------------------------------------------------------
def test_base_service_reaches_base_deployment(svc, dep):
    report = services.selector_report(svc, dep)
    assert report.ok, str(report)
    assert _finding(report, "service selector").level == "ok"
    assert _finding(report, "targetPort").level == "ok"
    assert _finding(report, "deployment selector").level == "ok"


def test_base_service_is_clusterip_on_8000_named_http_by_name(svc):
    # The brief of the course: ClusterIP, port 8000, named port http, targetPort by name.
    assert svc["spec"]["type"] == "ClusterIP"
    (port,) = svc["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("http", 8000, "http")
    assert svc["metadata"]["name"] != "vllm"  # VLLM_ENV: "please do not name the service as vllm"
    assert manifests.validate(svc) == []


# -- selectors (K8S_SERVICE, K8S_LABELS) --------------------------------------------------
def test_wrong_selector_names_both_sides_and_the_fix(dep):
    bad = manifests.load_one("examples/service/wrong-selector.yaml")
    report = services.selector_report(bad, dep)
    assert not report.ok
    f = _finding(report, "service selector", "error")
    assert "app=vllm" in f.what
    assert "app.kubernetes.io/name=vllm-qwen25-coder-7b" in f.what
    assert "selector" in f.fix


def test_extra_pod_labels_do_not_matter(svc, dep):
    # K8S_LABELS: an equality-based selector is satisfied when all its requirements
    # are; labels it does not mention are irrelevant.
    dep = copy.deepcopy(dep)
    dep["spec"]["template"]["metadata"]["labels"]["tier"] = "inference"
    assert services.selector_report(svc, dep).ok


def test_every_selector_key_must_match(svc, dep):
    # K8S_LABELS: "all of these must be satisfied"; one wrong value is enough to miss.
    svc = copy.deepcopy(svc)
    svc["spec"]["selector"]["app.kubernetes.io/part-of"] = "another-course"
    report = services.selector_report(svc, dep)
    f = _finding(report, "service selector", "error")
    assert "'vllm-course'" in f.what and "'another-course'" in f.what


def test_service_without_selector_is_a_warning(svc, dep):
    # K8S_SERVICE: for a Service without a selector, Kubernetes does not create
    # EndpointSlices automatically.
    svc = copy.deepcopy(svc)
    del svc["spec"]["selector"]
    f = _finding(services.selector_report(svc, dep), "service selector")
    assert f.level == "warning" and "no EndpointSlices" in f.what


def test_service_in_another_namespace_selects_nothing(dep):
    # K8S_SERVICE: a selector picks Pods of the Service's own namespace.
    bad = manifests.load_one("examples/service/wrong-namespace.yaml")
    f = _finding(services.selector_report(bad, dep), "namespace", "error")
    assert "default" in f.what and "ai-platform" in f.what


def test_deployment_selector_must_match_its_template(svc, dep):
    # K8S_DEPLOY: ".spec.selector must match .spec.template.metadata.labels, or it
    # will be rejected by the API".
    dep = copy.deepcopy(dep)
    dep["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/name": "vllm"}
    f = _finding(services.selector_report(svc, dep), "deployment selector", "error")
    assert "does not match" in f.what


@pytest.mark.parametrize("expr, labels, matches", [
    # K8S_LABELS set-based requirements: In, NotIn, Exists (key only), DoesNotExist.
    ({"key": "tier", "operator": "In", "values": ["a", "b"]}, {"tier": "a"}, True),
    ({"key": "tier", "operator": "In", "values": ["a", "b"]}, {"tier": "c"}, False),
    ({"key": "tier", "operator": "NotIn", "values": ["a"]}, {}, True),   # "NotIn" also matches a missing key
    ({"key": "tier", "operator": "NotIn", "values": ["a"]}, {"tier": "a"}, False),
    ({"key": "tier", "operator": "Exists"}, {"tier": "x"}, True),
    ({"key": "tier", "operator": "Exists"}, {}, False),
    ({"key": "tier", "operator": "DoesNotExist"}, {}, True),
    ({"key": "tier", "operator": "DoesNotExist"}, {"tier": "x"}, False),
])
def test_set_based_selectors(expr, labels, matches):
    problems = services.label_selector_mismatches({"matchExpressions": [expr]}, labels)
    assert (problems == []) is matches


# -- ports (K8S_SERVICE) ---------------------------------------------------------------
def test_target_port_by_name_resolves_to_container_port(svc, dep):
    pods = services.pod_shape(dep)
    number, how = services.resolve_target_port(svc["spec"]["ports"][0], pods)
    assert number == 8000 and "'http'" in how


def test_target_port_defaults_to_port(dep):
    # ServicePort API reference: "If this is not specified, the value of the 'port'
    # field is used (an identity map)."
    pods = services.pod_shape(dep)
    assert services.resolve_target_port({"port": 8000}, pods)[0] == 8000


def test_unknown_target_port_name_is_an_error(dep):
    bad = manifests.load_one("examples/service/wrong-target-port-name.yaml")
    f = _finding(services.selector_report(bad, dep), "targetPort", "error")
    assert "'openai'" in f.what and "http" in f.what


def test_target_port_number_other_than_vllm_port_is_an_error(dep):
    bad = manifests.load_one("examples/service/wrong-target-port-number.yaml")
    f = _finding(services.selector_report(bad, dep), "targetPort", "error")
    assert "8080" in f.what and "8000" in f.what


def test_undeclared_number_on_a_non_vllm_container_is_only_a_warning(svc):
    # K8S pod API: "Not specifying a port here DOES NOT prevent that port from being
    # exposed": traffic still goes to an undeclared port.
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "web", "namespace": "ai-platform",
                                                        "labels": {"app.kubernetes.io/name": "vllm-qwen25-coder-7b"}},
           "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}}
    svc = copy.deepcopy(svc)
    svc["spec"]["ports"][0]["targetPort"] = 8000
    f = _finding(services.selector_report(svc, pod), "targetPort")
    assert f.level == "warning"


@pytest.mark.parametrize("args, port", [
    (["--model=/m", "--port=9000"], 9000),
    (["--model", "/m", "--port", "9001"], 9001),
    (["--model=/m"], 8000),  # vLLM's OpenAI server defaults to port 8000 (`vllm serve --help`)
])
def test_vllm_listen_port(args, port):
    assert services.vllm_listen_port({"image": "vllm/vllm-openai:v0.32.0", "args": args}) == port


def test_non_vllm_container_has_no_vllm_port():
    assert services.vllm_listen_port({"image": "nginx", "args": ["--port=1"]}) is None


# -- DNS (K8S_DNS) ---------------------------------------------------------------------
def test_dns_names(svc):
    names = {d.name: d for d in services.dns_names(svc)}
    # "my-svc.my-namespace.svc.cluster-domain.example" resolves to the ClusterIP.
    assert "vllm-qwen25-coder-7b.ai-platform.svc.cluster.local" in names
    # Queries without a namespace are limited to the Pod's namespace; "data.prod" works
    # from another namespace.
    assert "only" in names["vllm-qwen25-coder-7b"].works_from
    assert "any namespace" in names["vllm-qwen25-coder-7b.ai-platform"].works_from
    # Named ports: SRV "_port-name._port-protocol.my-svc.my-namespace.svc.cluster-domain.example".
    srv = [d for d in names.values() if d.record == "SRV"]
    assert [d.name for d in srv] == ["_http._tcp.vllm-qwen25-coder-7b.ai-platform.svc.cluster.local"]


def test_dns_names_need_a_namespace():
    with pytest.raises(InputError):
        services.dns_names("vllm-qwen25-coder-7b")


# -- injected environment variables (K8S_SERVICE "Environment variables", KUBELET_ENV) ----
def test_env_vars_match_the_documented_redis_example():
    # K8S_SERVICE "Environment variables": the Service redis-primary (redis-master in
    # older versions of the page) "which exposes TCP port 6379 and has been allocated
    # cluster IP address 10.0.0.11, produces the following environment variables".
    svc = {"kind": "Service", "metadata": {"name": "redis-primary"},
           "spec": {"clusterIP": "10.0.0.11", "ports": [{"port": 6379, "protocol": "TCP"}]}}
    assert services.service_env_vars(svc) == {
        "REDIS_PRIMARY_SERVICE_HOST": "10.0.0.11",
        "REDIS_PRIMARY_SERVICE_PORT": "6379",
        "REDIS_PRIMARY_PORT": "tcp://10.0.0.11:6379",
        "REDIS_PRIMARY_PORT_6379_TCP": "tcp://10.0.0.11:6379",
        "REDIS_PRIMARY_PORT_6379_TCP_PROTO": "tcp",
        "REDIS_PRIMARY_PORT_6379_TCP_PORT": "6379",
        "REDIS_PRIMARY_PORT_6379_TCP_ADDR": "10.0.0.11",
    }


def test_named_port_adds_service_port_name_var(svc):
    # KUBELET_ENV: every named port adds {NAME}_SERVICE_PORT_{PORTNAME}.
    names = services.service_env_vars(svc)
    assert names["VLLM_QWEN25_CODER_7B_SERVICE_PORT_HTTP"] == "8000"
    assert services.env_prefix("vllm-qwen25-coder-7b") == "VLLM_QWEN25_CODER_7B"
    assert services.env_prefix("1abc") == "_1ABC"  # KUBELET_ENV: a leading digit gets "_"


def test_headless_service_injects_nothing(svc):
    # KUBELET_ENV: services whose ClusterIP is "None" are skipped.
    svc = copy.deepcopy(svc)
    svc["spec"]["clusterIP"] = "None"
    assert services.service_env_vars(svc) == {}


def test_service_named_vllm_collides_with_vllm_port(dep):
    # VLLM_ENV: "please do not name the service as vllm, otherwise environment variables
    # set by Kubernetes might conflict with vLLM's environment variables".
    bad = manifests.load_one("examples/service/named-vllm.yaml")
    assert services.service_env_vars(bad)["VLLM_PORT"].startswith("tcp://")
    # A Deployment that keeps the default (service links on), unlike the course's.
    dep = copy.deepcopy(dep)
    dep["spec"]["template"]["spec"].pop("enableServiceLinks", None)
    report = services.selector_report(bad, dep)
    f = _finding(report, "env vars", "error")
    assert "VLLM_PORT" in f.what and "enableServiceLinks: false" in f.fix


def test_other_vllm_variable_shapes_collide_too():
    f = services.env_var_findings("vllm-dp-master")[0]
    assert f.level == "error" and "VLLM_DP_MASTER_PORT" in f.what


def test_course_name_only_warns(svc):
    (f,) = services.env_var_findings(svc)
    assert f.level == "warning" and "Unknown vLLM environment variable" in f.what


def test_enable_service_links_false_turns_injection_off(dep):
    # K8S_SERVICE / PodSpec: enableServiceLinks "indicates whether information about
    # services should be injected into pod's environment variables".
    bad = manifests.load_one("examples/service/named-vllm.yaml")
    dep = copy.deepcopy(dep)
    dep["spec"]["template"]["spec"]["enableServiceLinks"] = False
    f = _finding(services.selector_report(bad, dep), "env vars")
    assert f.level == "ok"


def test_unrelated_name_is_clean():
    assert services.env_var_findings("llm-api")[0].level == "ok"


# -- the broken examples -------------------------------------------------------------
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_broken_examples_are_schema_valid_but_wrong(path, dep):
    obj = manifests.load_one(path)
    assert manifests.validate(obj) == [], "examples must pass the strict schemas: they are semantically wrong"
    # Against the Kubernetes default (service links on): the course's own Deployment turns
    # them off, which alone defuses named-vllm.yaml.
    dep = copy.deepcopy(dep)
    dep["spec"]["template"]["spec"].pop("enableServiceLinks", None)
    report = services.selector_report(obj, dep)
    assert not report.ok, f"{path.name} should fail the check"
    assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "vllm-course"


def test_there_are_broken_examples():
    assert {p.name for p in EXAMPLES} >= {"wrong-selector.yaml", "wrong-target-port-name.yaml", "named-vllm.yaml"}


# -- inputs --------------------------------------------------------------------------
def test_parse_selector():
    assert services.parse_selector("a=b, c = d\n") == {"a": "b", "c": "d"}
    with pytest.raises(InputError):
        services.parse_selector("app")


def test_report_rejects_non_service(dep):
    with pytest.raises(InputError):
        services.selector_report(dep, dep)
    with pytest.raises(InputError):
        services.selector_report({"kind": "Service", "metadata": {"name": "x"}, "spec": {}},
                                 {"kind": "ConfigMap", "metadata": {"name": "y"}})


# -- against the real vLLM 0.32.0 (its own virtual environment) ----------------------------
VLLM_PY = mode.vllm_python()
needs_vllm_env = pytest.mark.skipif(not Path(VLLM_PY).exists(),
                                    reason=f"no local vLLM at {VLLM_PY} (scripts/setup.sh installs it)")


def _run_vllm_python(code: str, env_extra: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_")}
    env.update(env_extra)
    return subprocess.run([str(VLLM_PY), "-c", code], capture_output=True, text=True, timeout=120, env=env)


@needs_vllm_env
def test_collidable_list_matches_installed_vllm():
    proc = _run_vllm_python("import vllm.envs as e; print('\\n'.join(e.environment_variables))", {})
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = {n for n in proc.stdout.split() if n.startswith("VLLM_")}
    assert {n for n in names if services.INJECTED_NAME_SHAPE.search(n)} == services.VLLM_COLLIDABLE_ENV_VARS


@needs_vllm_env
def test_vllm_really_rejects_a_kubernetes_vllm_port():
    # vllm/envs.py get_vllm_port(): a URI in VLLM_PORT raises ValueError naming the
    # Kubernetes service discovery issue.
    injected = services.service_env_vars("vllm", cluster_ip="10.43.0.7")
    proc = _run_vllm_python("import vllm.envs as e; e.VLLM_PORT", {"VLLM_PORT": injected["VLLM_PORT"]})
    assert proc.returncode != 0
    assert re.search(r"VLLM_PORT 'tcp://10\.43\.0\.7:8000' appears to be a URI", proc.stderr)


@needs_vllm_env
def test_vllm_flags_unknown_injected_variables():
    # vllm/platforms/interface.py validate_environ(): unknown VLLM_* names warn, or fail
    # with --fail-on-environ-validation (hard_fail=True).
    injected = services.service_env_vars("vllm-qwen25-coder-7b", cluster_ip="10.43.0.7")
    proc = _run_vllm_python("from vllm.platforms import current_platform as p; p.validate_environ(True)",
                            {"VLLM_QWEN25_CODER_7B_SERVICE_HOST": injected["VLLM_QWEN25_CODER_7B_SERVICE_HOST"]})
    assert proc.returncode != 0
    assert "Unknown vLLM environment variable detected: VLLM_QWEN25_CODER_7B_SERVICE_HOST" in proc.stderr


def test_rendered_base_service_reaches_rendered_deployment():
    # What `kubectl apply -k manifests/base` would create, not only the single files.
    objs = manifests.render("base")
    (svc,) = [o for o in objs if o["kind"] == "Service"]
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    assert services.selector_report(svc, dep).ok


OVERLAYS = sorted(p.parent.relative_to(manifests.MANIFESTS_DIR).as_posix()
                  for p in Path(manifests.MANIFESTS_DIR, "overlays").glob("*/kustomization.yaml"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_keeps_the_service_on_the_pods(overlay):
    objs = manifests.render(overlay)
    svcs = [o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "vllm-qwen25-coder-7b"]
    deps = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "vllm-qwen25-coder-7b"]
    assert len(svcs) == 1 and len(deps) == 1, f"{overlay} should render the vLLM Service and Deployment"
    report = services.selector_report(svcs[0], deps[0])
    assert report.ok, str(report)


# -- what each broken example changes, and the commands by hand ------------------------------
def test_own_findings_keep_only_what_an_example_changes(svc, dep):
    # With service links on, the course's own Service warns about its injected VLLM_* variables;
    # the broken examples share that warning, so the lab shows each one only its own problem.
    dep = copy.deepcopy(dep)
    dep["spec"]["template"]["spec"].pop("enableServiceLinks", None)
    baseline = services.selector_report(svc, dep)
    assert baseline.checks("warning") == ["env vars"]
    for path in EXAMPLES:
        full = services.selector_report(manifests.load_one(path), dep)
        own = services.own_findings(full, baseline)
        assert own.checks() == full.checks("error"), f"{path.name}: {own}"
        assert own.errors == full.errors and not own.ok


def test_own_findings_of_the_same_service_are_empty(svc, dep):
    report = services.selector_report(svc, dep)
    assert services.own_findings(report, report).findings == ()


def test_kubectl_commands_name_the_service(svc):
    cmds = services.kubectl_commands(svc)
    n = system()
    assert cmds["endpoints"].startswith(
        f"kubectl get endpointslices -n {n.namespace} -l kubernetes.io/service-name={n.service}")
    assert cmds["forward"] == f"kubectl port-forward -n {n.namespace} service/{n.service} {n.service_port}:http"
    assert "Authorization: Bearer $VLLM_API_KEY" in cmds["models"] and "/v1/models" in cmds["models"]
    assert cmds["apply"] == "kubectl apply -f manifests/base/vllm-service.yaml"


def test_report_headline_says_traffic_reaches_the_pods(svc, dep):
    assert str(services.selector_report(svc, dep)).splitlines()[0].endswith(services.REACHES)
