"""The one place that decides the mode: offline/live and CPU/GPU, each with its reason."""
from __future__ import annotations

import pytest

from llmserve.world import mode
from llmserve.core.errors import ClusterError


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("COURSE_MODE", "COURSE_DEVICE", "COURSE_SERVER", "KUBERNETES_SERVICE_HOST", "COURSE_VLLM_PYTHON"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))
    return tmp_path


def test_no_kubeconfig_means_offline_and_says_where_it_looked(clean_env):
    m = mode.detect()
    assert m.cluster == "offline" and not m.live
    assert str(clean_env / "absent-kubeconfig") in m.cluster_reason
    assert "OFFLINE" in m.describe()


def test_forced_offline_wins(clean_env, monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "offline")
    assert mode.detect().cluster_reason == "COURSE_MODE=offline is set"


def test_forced_live_without_cluster_is_an_error_naming_the_fix(clean_env, monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "live")
    with pytest.raises(ClusterError, match="KUBECONFIG"):
        mode.detect()


def test_unknown_mode_value_is_an_error(clean_env, monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "sometimes")
    with pytest.raises(ClusterError, match="'live', 'offline'"):
        mode.detect()


def test_device_can_be_forced_to_cpu(clean_env, monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert mode.detect().device == "cpu"


def test_device_follows_torch(clean_env):
    import torch
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert mode.detect().device == expected


def test_offline_act_reports_and_does_not_run(clean_env, capsys):
    calls = []
    result = mode.detect().act("apply the PV", lambda: calls.append(1))
    assert result is None and calls == []
    assert "Would apply the PV" in capsys.readouterr().out


def test_live_act_runs(clean_env):
    live = mode.Mode("live", "test", "cpu", "test")
    assert live.act("anything", lambda: 42) == 42


def test_server_choice(clean_env, monkeypatch):
    offline = mode.detect()
    monkeypatch.setenv("COURSE_VLLM_PYTHON", str(clean_env / "no-python"))
    kind, reason = mode.detect_server(offline)
    assert kind == "none" and "scripts/setup.sh" in reason
    fake = clean_env / "python"
    fake.write_text("")
    monkeypatch.setenv("COURSE_VLLM_PYTHON", str(fake))
    assert mode.detect_server(offline)[0] == "local"
    live = mode.Mode("live", "test", "cpu", "test")
    assert mode.detect_server(live)[0] == "cluster"
    monkeypatch.setenv("COURSE_SERVER", "local")
    assert mode.detect_server(live)[0] == "local"
