"""The one place that decides the mode: offline/live and CPU/GPU, each with its reason."""
from __future__ import annotations

import sys

import pytest

from llmserve.core.errors import ClusterError, ServerError
from llmserve.world import mode
from tests.fakes.serving import fake_cluster
from tests.support import REPO


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("COURSE_MODE", "COURSE_DEVICE", "COURSE_SERVER", "KUBERNETES_SERVICE_HOST", "COURSE_VLLM_PYTHON",
                "COURSE_CONTEXT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))
    return tmp_path


@pytest.fixture
def api(clean_env, monkeypatch):
    with fake_cluster(clean_env, monkeypatch) as server:
        yield server


def test_no_kubeconfig_means_offline_and_says_where_it_looked(clean_env):
    m = mode.detect()
    assert m.cluster == "offline" and not m.live and m.context is None
    assert str(clean_env / "absent-kubeconfig") in m.cluster_reason
    assert "OFFLINE" in m.describe()


def test_a_cluster_that_answers_means_live_with_its_context(api):
    m = mode.detect()
    assert m.live and m.context == "course"
    assert m.cluster_reason == f"API server {api.url} answered (Kubernetes v1.36.0)"


def test_forced_offline_wins_over_a_cluster_that_answers(api, monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "offline")
    m = mode.detect()
    assert not m.live and m.cluster_reason == "COURSE_MODE=offline is set"
    assert api.requests == []   # it did not even ask


@pytest.mark.parametrize("value", ["live", "auto", " LIVE "])
def test_live_and_auto_use_the_cluster(api, monkeypatch, value):
    monkeypatch.setenv("COURSE_MODE", value)
    assert mode.detect().live


def test_forced_live_without_cluster_is_an_error_naming_the_fix(clean_env, monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "live")
    with pytest.raises(ClusterError, match="KUBECONFIG"):
        mode.detect()


def test_inside_a_pod_without_a_kubeconfig_it_tries_the_service_account(clean_env, monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.43.0.1")
    m, reason, _ = mode.detect_cluster()
    assert m == "offline" and "cluster did not answer" in reason and "inside a Pod" in reason


def test_unknown_mode_value_is_an_error(clean_env, monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "sometimes")
    with pytest.raises(ClusterError, match="'live', 'offline'"):
        mode.detect()


def test_device_can_be_forced_to_cpu(clean_env, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    m = mode.detect()
    assert (m.device, m.device_reason, m.gpu) == ("cpu", "COURSE_DEVICE=cpu is set", False)


def test_device_follows_torch(clean_env, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.get_device_name", lambda i: "NVIDIA L4")
    m = mode.detect()
    assert (m.device, m.device_reason, m.gpu) == ("cuda", "torch sees NVIDIA L4", True)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert mode.detect_device() == ("cpu", "torch sees no CUDA GPU")


def test_without_torch_the_device_is_the_cpu(clean_env, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)   # import torch now raises ImportError
    assert mode.detect_device() == ("cpu", "torch is not installed")


def test_offline_act_reports_and_does_not_run(clean_env, capsys):
    calls = []
    m = mode.detect()
    result = m.act("apply the PV", lambda: calls.append(1))
    assert result is None and calls == []
    assert capsys.readouterr().out == f"[offline] Would apply the PV. (No cluster: {m.cluster_reason}.)\n"


def test_live_act_runs_and_prints_nothing(clean_env, capsys):
    live = mode.Mode("live", "test", "cpu", "test")
    assert live.act("anything", lambda: 42) == 42
    assert capsys.readouterr().out == ""


def test_banner_prints_the_description(clean_env, capsys):
    m = mode.detect()
    m.banner()
    assert capsys.readouterr().out == m.describe() + "\n"


def test_server_choice(clean_env, monkeypatch):
    offline = mode.detect()
    monkeypatch.setenv("COURSE_VLLM_PYTHON", str(clean_env / "no-python"))
    kind, reason = mode.detect_server(offline)
    assert kind == "none" and "scripts/setup.sh" in reason and str(clean_env / "no-python") in reason
    fake = clean_env / "python"
    fake.write_text("")
    monkeypatch.setenv("COURSE_VLLM_PYTHON", str(fake))
    assert mode.detect_server(offline) == ("local", f"no cluster, so a real vLLM engine runs on this machine's CPU "
                                                    f"({fake})")
    live = mode.Mode("live", "test", "cpu", "test")
    assert mode.detect_server(live)[0] == "cluster"
    monkeypatch.setenv("COURSE_SERVER", "local")
    assert mode.detect_server(live)[0] == "local"


def test_the_local_engine_lives_in_the_repositorys_vllm_environment(clean_env):
    assert mode.vllm_python() == REPO / ".venv-vllm" / "bin" / "python"


def test_a_mode_cannot_change_once_decided(clean_env):
    m = mode.detect()
    with pytest.raises(AttributeError):
        m.cluster = "live"


def test_a_lab_with_nothing_to_talk_to_skips_its_checks_only_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert mode.ran_for_real("local", "lab") and mode.ran_for_real("cluster", "lab")
    assert mode.ran_for_real("none", "lab") is False
    monkeypatch.setenv("CI", "true")
    assert mode.ran_for_real("local", "lab")
    with pytest.raises(ServerError, match="nothing to talk to under CI") as err:
        mode.ran_for_real("none", "capstone lab")
    assert "capstone lab" in err.value.what and "scripts/setup.sh" in err.value.fix
