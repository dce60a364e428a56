"""llmserve.security.policy: the gateway's nginx.conf read from its ConfigMap, what it passes,
and the local rewrite. What nginx itself does with the same text is in test_gateway."""
from __future__ import annotations

import pytest

from llmserve.core import manifest_files
from llmserve.core.errors import InputError
from llmserve.core.names import system
from llmserve.core.objects import vllm_container
from llmserve.security import policy, routes

CONF = policy.gateway_conf()
TREE = policy.parse(CONF)


def test_the_configuration_comes_from_the_configmap():
    cm = manifest_files.load_one(policy.CONFIGMAP)
    assert cm["kind"] == "ConfigMap" and cm["data"][policy.CONF_KEY] == CONF


def test_the_real_configuration_passes_the_check():
    report = policy.check()
    assert report.ok, str(report)
    assert {f"passes {m} {p}" for m, p in policy.CLIENT_ROUTES} | {"blocks the rest", "upstream"} \
        == set(report.checks("ok"))


@pytest.mark.parametrize("method, raw, status, upstream", [
    ("GET", "/v1/models", None, "/v1/models"),
    ("POST", "/v1/chat/completions", None, "/v1/chat/completions"),
    ("POST", "/v1/completions", None, "/v1/completions"),
    ("POST", "/v1/models", 403, None),                        # limit_except GET
    ("GET", "/v1/chat/completions", 403, None),               # limit_except POST
    ("HEAD", "/v1/models", None, "/v1/models"),               # GET allows HEAD
    ("POST", "/invocations", 404, None),
    ("POST", "/tokenize", 404, None),
    ("GET", "/metrics", 404, None),
    ("GET", "/v1/models/", 404, None),                        # exact match: no trailing slash
    ("POST", "/v1/chat/completions/../../invocations", 404, None),
    ("GET", "/invocations/../v1/models", None, "/v1/models"),  # normalised, then sent as /v1/models
    ("GET", "/v1//models", None, "/v1/models"),
    ("GET", "/v1/%6dodels?x=1", None, "/v1/models"),
    ("GET", "/../etc/passwd", 400, None),
    ("GET", "/healthz", 200, None),
])
def test_decide_follows_nginx_location_matching(method, raw, status, upstream):
    d = policy.decide(TREE, method, raw)
    assert (d.status, d.upstream_path) == (status, upstream), str(d)


def test_a_leaky_configuration_is_named_route_by_route():
    leaky = CONF.replace("return 404 '{\"error\": \"not served by the API gateway\"}\\n';", "proxy_pass http://vllm;")
    assert leaky != CONF
    report = policy.check(leaky)
    assert not report.ok
    errors = {f.check for f in report.errors}
    assert {"blocks POST /invocations", "blocks POST /tokenize", "blocks POST /generative_scoring",
            "blocks POST /scale_elastic_ep", "blocks GET /metrics"} <= errors
    assert "blocks the rest" not in report.checks()
    assert any("with no key asked" in f.what for f in report.errors)


def test_a_missing_client_path_and_a_wrong_upstream_are_errors():
    broken = CONF.replace("location = /v1/completions", "location = /v1/completion").replace(
        f"server {system().dns_name}:{system().service_port};", "server vllm:8000;")
    report = policy.check(broken)
    assert {"passes POST /v1/completions", "upstream"} <= set(report.checks("error"))


def test_regex_locations_are_refused_not_misread():
    with pytest.raises(InputError, match="regex location"):
        policy.decide(policy.parse(CONF.replace("location = /v1/models", "location ~ ^/v1/models$")),
                      "GET", "/v1/models")


@pytest.mark.parametrize("text, message", [
    ("events { worker_connections 1;", "ends inside"),
    ("events { } }", "unexpected '}'"),
    ("http { return 'unclosed; }", "cannot read"),
    ("; a b;", "without a directive"),
])
def test_parse_errors_say_what_is_wrong(text, message):
    with pytest.raises(InputError, match=message):
        policy.parse(text)


def test_parse_keeps_quoted_text_and_drops_comments():
    tree = policy.parse("# c { ;\nhttp { default_type 'a b;{}'; # tail\n}")
    http = tree.first("http")
    assert http.first("default_type").args == ("a b;{}",) and len(http.block) == 1


def test_local_config_changes_three_things_only():
    runtime = "/run/gateway-test"
    local = policy.local_config(CONF, upstream="127.0.0.1:1234", listen="127.0.0.1:5678", runtime_dir=runtime)
    changed = [(a, b) for a, b in zip(CONF.splitlines(), local.splitlines()) if a != b]
    assert len(CONF.splitlines()) == len(local.splitlines())
    assert sum("server 127.0.0.1:1234;" in b for _, b in changed) == 1
    assert sum("listen 127.0.0.1:5678;" in b for _, b in changed) == 1
    paths = [(a, b) for a, b in changed if "server" not in b and "listen" not in b]
    assert paths and all(a.replace("/tmp/", runtime + "/") == b for a, b in paths)
    assert "/tmp/" not in local
    # The rewritten text decides every request as the original does.
    tree = policy.parse(local)
    for r in routes.ROUTES:
        for m in r.methods:
            assert policy.decide(tree, m, r.path) == policy.decide(TREE, m, r.path)


def test_local_config_refuses_what_it_cannot_rewrite_exactly():
    twice = CONF.replace("listen 8080;", "listen 8080;\n        listen 8081;")
    with pytest.raises(InputError, match="exactly one of each"):
        policy.local_config(twice, upstream="127.0.0.1:1", listen="127.0.0.1:2", runtime_dir="/x")


# -- the manifests agree with each other -------------------------------------------------
GATEWAY = manifest_files.load_one("components/api-gateway/gateway-deployment.yaml")
VLLM_POLICY = manifest_files.load_one("components/api-gateway/vllm-networkpolicy.yaml")
VLLM = manifest_files.load_one("base/vllm-deployment.yaml")


def test_the_upstream_is_the_vllm_service_and_the_listen_port_the_containers():
    n = system()
    assert policy.upstream_servers(TREE) == {"vllm": [f"{n.dns_name}:{n.service_port}"]}
    port = vllm_container(GATEWAY, "nginx")["ports"][0]
    assert policy.listen_ports(TREE) == [str(port["containerPort"])]
    name, service_port = policy.gateway_service()
    svc = manifest_files.load_one(policy.SERVICE_FILE)
    assert svc["spec"]["ports"][0]["targetPort"] == port["name"] and service_port == port["containerPort"]
    assert svc["spec"]["selector"].items() <= GATEWAY["spec"]["template"]["metadata"]["labels"].items()


def test_the_gateway_pod_mounts_the_configmap_as_nginx_conf_and_writes_only_tmp():
    spec = GATEWAY["spec"]["template"]["spec"]
    c = vllm_container(GATEWAY, "nginx")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    conf = mounts["/etc/nginx/nginx.conf"]
    volume = next(v for v in spec["volumes"] if v["name"] == conf["name"])
    assert volume["configMap"]["name"] == manifest_files.load_one(policy.CONFIGMAP)["metadata"]["name"]
    assert conf["subPath"] == policy.CONF_KEY and conf["readOnly"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and "emptyDir" in next(
        v for v in spec["volumes"] if v["name"] == mounts["/tmp"]["name"])
    paths = [d.args[0] for d in policy.parse(CONF).block if d.name == "pid"]
    assert paths and all(p.startswith("/tmp/") for p in paths)
    assert spec["securityContext"]["runAsNonRoot"] is True and c["image"].startswith("nginxinc/nginx-unprivileged:")
    assert ":latest" not in c["image"]


def test_the_vllm_policy_admits_only_the_gateway_on_vllms_port():
    spec = VLLM_POLICY["spec"]
    pod_labels = VLLM["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"].items() <= GATEWAY["spec"]["template"]["metadata"]["labels"].items()
    assert "namespaceSelector" not in source and "ipBlock" not in source
    assert [p["port"] for p in rule["ports"]] == [system().container_port]
