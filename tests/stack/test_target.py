"""Where the lab's requests go: the target of each kind, and the target that has nothing to talk to."""
from __future__ import annotations

from llmserve.stack import target
from llmserve.world.mode import Mode


def offline(device="cpu") -> Mode:
    return Mode("offline", "COURSE_MODE=offline is set", device, "test")


def test_nothing_to_talk_to_answers_every_request_with_none_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_VLLM_PYTHON", str(tmp_path / "no-python"))
    monkeypatch.delenv("COURSE_SERVER", raising=False)
    t = target.open_target(offline())
    assert t.kind == "none" and not t
    assert "scripts/setup.sh" in t.describe() and "no local vLLM" in t.describe()
    messages = [{"role": "user", "content": "hi"}]
    assert (t.served_model(), t.chat(messages), t.chat_without_key(messages), t.stream(messages), t.metrics()) \
        == (None, None, None, None, None)
    assert t.base_url is None and t.close() == "nothing to close"


def test_choose_target_follows_the_mode(monkeypatch, tmp_path):
    python = tmp_path / "python"
    python.write_text("")
    monkeypatch.setenv("COURSE_VLLM_PYTHON", str(python))
    monkeypatch.delenv("COURSE_SERVER", raising=False)
    assert target.choose_target(offline())[0] == "local"
    live = Mode("live", "API server answered", "cpu", "test", context="k3s")
    assert target.choose_target(live)[0] == "cluster"
    monkeypatch.setenv("COURSE_SERVER", "local")
    assert target.choose_target(live)[0] == "local"


def test_a_target_closes_what_it_opened():
    closed = []
    local = target.Target("local", "http://127.0.0.1:1", "k", _closers=[lambda: closed.append(1)])
    remote = target.Target("cluster", "http://127.0.0.1:2/", "k")
    assert remote.base_url == "http://127.0.0.1:2/v1" and bool(remote)
    assert "stopped" in local.close() and closed == [1]
    assert local.close() == "stopped the local vLLM engine" and closed == [1]     # only once
    assert "port-forward" in remote.close()


def test_startup_printer_is_quiet_and_strips_log_noise():
    lines = []
    progress = target.startup_printer(every_s=10, out=lines.append)
    progress(0.0, "starting: starting")
    progress(3.0, "starting: something")            # too soon: not printed
    progress(11.0, "starting: (EngineCore pid=1)\x1b[0;0m \x1b[32mINFO\x1b[0m 11-27 09:24:36 "
                   "\x1b[90m[default_loader.py:501]\x1b[0m Loading weights took 0.02 seconds")
    progress(12.0, "ready")
    assert lines == ["[   0 s] starting: starting", "[  11 s] starting: Loading weights took 0.02 seconds",
                     "[  12 s] ready"]
