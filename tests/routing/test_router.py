"""One vllm-router process (llmserve/routing/router.py): refused inputs, stopped on error and at exit.

The atexit check runs a router over a stand-in worker (an HTTP server answering /health) in a
child Python, which exits without stopping it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from llmserve.core.errors import InputError, ServerError
from llmserve.routing.router import Router, router_binary
from tests.support import REPO


def test_a_router_fronts_only_loopback_workers_with_a_router_policy():
    with pytest.raises(InputError, match="loopback"):
        Router(["http://10.0.0.1:8000"], "round_robin")
    with pytest.raises(InputError, match="not a vllm-router policy"):
        Router(["http://127.0.0.1:8000"], "service")
    r = Router(["http://127.0.0.1:8000"], "cache_aware", port=1234, metrics_port=1235)
    cmd = r.command()
    assert cmd[cmd.index("--policy") + 1] == "cache_aware" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--prometheus-host") + 1] == "127.0.0.1" and r.metrics_url.endswith(":1235/metrics")


def test_a_missing_router_binary_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_VLLM_ROUTER", str(tmp_path / "nope"))
    assert router_binary() == tmp_path / "nope"
    with pytest.raises(ServerError, match="setup.sh"):
        Router(["http://127.0.0.1:8000"], "round_robin").start()


LEFT_RUNNING = textwrap.dedent("""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from llmserve.routing.fleet import Router

    class Healthy(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
            self.wfile.write(b"ok")
        def log_message(self, *args):
            pass

    worker = ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(target=worker.serve_forever, daemon=True).start()
    router = Router([f"http://127.0.0.1:{worker.server_address[1]}"], "round_robin").start()
    print(router.proc.pid, flush=True)
    # exits here without router.stop(): the atexit hook must stop it
""")


def test_a_router_left_running_is_stopped_when_python_exits(router_bin):
    proc = subprocess.run([sys.executable, "-c", LEFT_RUNNING], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pid = int(proc.stdout.split()[-1])
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


@pytest.mark.vllm
def test_a_router_is_stopped_also_when_the_block_raises(fleet):
    with pytest.raises(RuntimeError):
        with Router(fleet.engine_urls, "random") as router:
            pid = router.proc.pid
            raise RuntimeError("a cell failed")
    assert router.proc is None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
