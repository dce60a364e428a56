"""The local engine's command line, environment and start-up failures (no real engine started).

``VLLM_CPU_KVCACHE_SPACE`` and ``--kv-cache-memory-bytes`` as vllm/platforms/cpu.py reads them;
a start-up that ends early is reported with the log's last lines (the wait is
:func:`llmserve.core.waiting.wait_until`).
"""
from __future__ import annotations

import socket
import sys

import pytest

from llmserve.core.errors import InputError, ServerError
from llmserve.serving.engine import FREE_PORT_FLOOR, LocalVLLM, ephemeral_ports, free_port, port_is_free
from llmserve.serving.tinymodel import TINY


def test_missing_vllm_env_names_setup(tmp_path):
    srv = LocalVLLM(TINY, python=tmp_path / "no-such-python", model_dir=tmp_path)
    with pytest.raises(ServerError) as err:
        srv.start()
    assert "bash scripts/setup.sh" in err.value.fix
    assert not srv.is_running()


def test_local_vllm_command_and_env(tmp_path):
    # VLLM_CPU_KVCACHE_SPACE goes in the environment (vllm/platforms/cpu.py reads it);
    # otherwise --kv-cache-memory-bytes on the command line, and never both.
    a = LocalVLLM(TINY, model_dir=tmp_path, kvcache_space_gib=2, port=1234, api_key="k")
    assert a.environment()["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert "--kv-cache-memory-bytes" not in a.command()
    cmd = a.command()
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert "--enforce-eager" in cmd and "--api-key=k" in cmd
    assert a.environment()["HF_HUB_OFFLINE"] == "1"
    assert a.environment()["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"     # the worker in the engine core
    assert a.environment()["OMP_NUM_THREADS"] == "1"                     # its one compute thread
    b = LocalVLLM(TINY, model_dir=tmp_path, kv_cache_memory_bytes=12345, port=1234)
    assert "VLLM_CPU_KVCACHE_SPACE" not in b.environment()
    assert b.command()[b.command().index("--kv-cache-memory-bytes") + 1] == "12345"
    with pytest.raises(InputError):
        LocalVLLM(TINY, host="0.0.0.0")
    with pytest.raises(InputError):
        LocalVLLM(TINY, kvcache_space_gib=1.5)


def test_port_helpers():
    port = free_port()
    assert port_is_free(port)


def test_free_ports_lie_below_the_ephemeral_range_and_are_not_handed_out_twice():
    # A port in the ephemeral range can be taken by any socket bound to port 0 (a kernel's ZMQ
    # socket took JupyterLab's once) between the choice and the server's bind, seconds later.
    ports = [free_port() for _ in range(50)]
    assert all(FREE_PORT_FLOOR <= p < ephemeral_ports().start for p in ports), ports
    assert len(set(ports)) == len(ports)
    with socket.socket() as held:
        held.bind(("127.0.0.1", ports[0]))
        held.listen()
        assert not port_is_free(ports[0])


def test_a_server_that_exits_during_start_up_is_reported_with_its_log(tmp_path):
    # A Python that runs `-m vllm…` without vLLM installed: it exits at once with an import error.
    srv = LocalVLLM(TINY, python=sys.executable, model_dir=tmp_path, startup_timeout_s=60,
                    log_path=tmp_path / "server.log")
    with pytest.raises(ServerError, match="exited during start-up") as err:
        srv.start()
    assert "ModuleNotFoundError" in err.value.what and "setup.sh" in err.value.fix
    assert not srv.is_running() and not srv.group_alive()


def test_a_key_exported_for_the_shared_server_does_not_reach_a_local_engine(tmp_path, monkeypatch):
    # Participants export the workshop server's key (book/workshop/participants.md); vLLM would take
    # $VLLM_API_KEY as its own key and refuse the local labs' requests.
    monkeypatch.setenv("VLLM_API_KEY", "the-shared-servers-key")
    plain = LocalVLLM(TINY, model_dir=tmp_path, port=1234)
    assert "VLLM_API_KEY" not in plain.environment() and not any(a.startswith("--api-key") for a in plain.command())
    keyed = LocalVLLM(TINY, model_dir=tmp_path, port=1234, api_key="local")
    assert "VLLM_API_KEY" not in keyed.environment()
    assert "--api-key=local" in keyed.command()
