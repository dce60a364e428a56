"""book/service.md: every name and number the prose restates is the manifests', and the by-hand path is complete.

The phrases are built from ``manifests/base`` (through ``core.names``) and the Service
rules, so a renamed Service, namespace or port fails here, naming what the page should say.
"""
from __future__ import annotations

import re

from llmserve.core.names import system
from llmserve.core.objects import arg_value, vllm_container
from llmserve.service import rules
from llmserve.world import manifests
from tests.support import REPO

PAGE = (REPO / "book" / "service.md").read_text(encoding="utf-8")
TEXT = re.sub(r"\s+", " ", PAGE)
SERVICE = manifests.load_one("base/vllm-service.yaml")
DEPLOYMENT = manifests.load_one("base/vllm-deployment.yaml")
NUMBERS = {8: "eight", 7: "seven", 9: "nine"}


def _says(phrase: str) -> None:
    assert re.sub(r"\s+", " ", phrase) in TEXT, f"book/service.md should say: {phrase!r}"


def _by_hand() -> str:
    return PAGE[PAGE.index("(service-by-hand)="):PAGE.index("(service-lab)=")]


def test_names_are_the_manifests():
    n = system()
    _says(f"one name, `{n.dns_name}`")
    for d in rules.dns_names(SERVICE):
        _says(f"`{d.name}`")
    _says(f"OPENAI_BASE_URL=http://{n.dns_name}:{n.service_port}/v1")
    labels = SERVICE["spec"]["selector"]
    (key, value), = labels.items()
    _says(f"`{key}: {value}`")


def test_ports_are_the_manifests():
    (port,) = SERVICE["spec"]["ports"]
    c = vllm_container(DEPLOYMENT)
    _says(f"on port {port['port']} is rewritten")
    _says(f"`{port['targetPort']}` looked up among the Pod's container ports gives `{c['ports'][0]['containerPort']}`")
    _says(f"(its `--port` is {arg_value(c, '--port')})")


def test_injected_variables_are_what_the_kubelet_would_inject():
    injected = rules.service_env_vars(SERVICE)
    _says(f"for each of the {NUMBERS[len(injected)]} above")
    prefix = rules.env_prefix(system().service)
    for name in (f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT", f"{prefix}_SERVICE_PORT_HTTP"):
        assert name in injected
        _says(f"`{name}`")
    _says(f"would print `{len(injected)}`")
    assert DEPLOYMENT["spec"]["template"]["spec"]["enableServiceLinks"] is False
    _says("the course's Deployment does set it")


def test_by_hand_path_uses_the_labs_commands():
    n = system()
    section = _by_hand().replace("\\\n  ", "")
    cmds = rules.kubectl_commands(SERVICE)
    for key in ("apply", "forward", "health", "models"):
        assert cmds[key] in section, f"the by-hand path should run: {cmds[key]}"
    assert f"kubectl get endpointslices -n {n.namespace} -l kubernetes.io/service-name={n.service}" in section
    assert f"`data[0].id` is `{n.served_model_name}`" in section
    assert "{ref}`deployment-by-hand`" in section and "$VLLM_API_KEY" in section
    assert section.count("Expected") >= 6 and "Next:" in section and "**shape**" in section


def test_page_names_the_moved_modules_only():
    assert "llmserve.services" not in PAGE and "from llmserve import services" not in PAGE
    assert "portforward.http_get" not in PAGE  # the HTTP helper lives in llmserve.core.http
    for module in ("llmserve.service.rules.selector_report", "llmserve.service.rules.dns_names",
                   "llmserve.service.live", "llmserve.core.http"):
        assert module in PAGE
