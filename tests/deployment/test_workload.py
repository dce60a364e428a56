"""deployment.workload: the Pod-spec essentials, the changed argument, and the same steps by hand."""
from __future__ import annotations

import pytest

from llmserve.core.errors import InputError
from llmserve.core.names import system
from llmserve.core.objects import arg_value, selector_of, vllm_container
from llmserve.deployment import workload as w
from llmserve.world import manifests

DEPLOYMENT = manifests.load_one("base/vllm-deployment.yaml")


def test_with_arg_replaces_in_place_and_leaves_the_original():
    new = w.with_arg(DEPLOYMENT, "--max-model-len", 4096)
    old_args = vllm_container(DEPLOYMENT)["args"]
    new_args = vllm_container(new)["args"]
    assert arg_value(vllm_container(DEPLOYMENT), "--max-model-len") == "8192"
    assert new_args[old_args.index("--max-model-len=8192")] == "--max-model-len=4096"
    assert len(new_args) == len(old_args)
    with pytest.raises(InputError):
        w.with_arg(DEPLOYMENT, "max-model-len", 1)


def test_with_arg_appends_a_new_flag_and_joins_a_split_one():
    split = w.with_arg(DEPLOYMENT, "--seed", 1)
    assert vllm_container(split)["args"][-1] == "--seed=1"
    two_words = {"spec": {"template": {"spec": {"containers": [{"name": "vllm", "args": ["--port", "9000"]}]}}}}
    assert vllm_container(w.with_arg(two_words, "--port", 8000))["args"] == ["--port=8000"]


def test_essentials_read_the_manifest():
    rows = dict(w.essentials(DEPLOYMENT))
    c = vllm_container(DEPLOYMENT)
    assert rows["strategy"] == DEPLOYMENT["spec"]["strategy"]["type"]
    assert rows["args"] == " ".join(c["args"])
    assert "gives up after 610 s" in rows["startupProbe"]
    assert rows["shutdown"].startswith(f"preStop sleep {c['lifecycle']['preStop']['sleep']['seconds']} s")
    assert f"up to {arg_value(c, '--shutdown-timeout')} s" in rows["shutdown"]
    assert "VLLM_API_KEY (from a Secret)" in rows["env"]
    assert rows["volume models"].endswith("at /models read-only")


def test_kubectl_commands_name_the_system():
    cmds = w.kubectl_commands(DEPLOYMENT)
    n = system()
    assert cmds["secret"].startswith(f"kubectl create secret generic {n.api_key_secret} -n {n.namespace} ")
    assert "openssl rand -hex 16" in cmds["secret"]
    assert cmds["rollout"] == f"kubectl rollout status deployment/{n.deployment} -n {n.namespace} --timeout=15m"
    assert f"-l {selector_of(DEPLOYMENT)}" in cmds["delete"] and f"-l {selector_of(DEPLOYMENT)}" in cmds["pods"]
    assert set(cmds) == {"secret", "apply", "rollout", "pods", "owners", "delete", "logs"}
