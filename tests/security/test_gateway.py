"""llmserve.security.gateway: the ConfigMap's nginx.conf under the real nginx binary, in front of a
stand-in upstream that echoes the path it receives. nginx's own answers must be the ones
policy.decide predicts, request by request (raw paths included: nginx normalises them)."""
from __future__ import annotations

import http.client
import os
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmserve.core.errors import ServerError
from llmserve.security import gateway, policy, routes


class Echo(BaseHTTPRequestHandler):
    def _answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"path": self.path, "auth": self.headers.get("Authorization")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def gw(nginx, upstream):
    with gateway.LocalGateway(upstream) as g:
        yield g


def raw(gw, method, path, key="k"):
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    conn.request(method, path, body=b"{}" if method in ("POST", "PUT") else None,
                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    return resp.status, text


def test_the_local_configuration_is_valid_for_nginx(nginx, tmp_path):
    local = policy.local_config(policy.gateway_conf(), upstream="127.0.0.1:9", listen="127.0.0.1:9",
                                runtime_dir=str(tmp_path))
    checked = gateway.check_config(local)
    assert checked.returncode == 0, checked.stderr
    assert gateway.nginx_version().startswith("nginx/")


def test_nginx_refuses_a_broken_configuration(nginx):
    assert gateway.check_config("events { }\nhttp { server { listen 127.0.0.1:9; bogus_directive on; } }") \
        .returncode != 0


REQUESTS = [(m, r.path) for r in routes.ROUTES for m in r.methods if "{" not in r.path] + [
    ("POST", "/v1/models"), ("GET", "/v1/chat/completions"), ("DELETE", "/v1/completions"),
    ("GET", "/v1/models/"), ("POST", "/v1/chat/completions/../../invocations"),
    ("GET", "/invocations/../v1/models"), ("GET", "/v1//models"), ("GET", "/v1/%6dodels?x=1"),
    ("GET", "/../etc/passwd"), ("GET", "/healthz"), ("POST", "/V1/chat/completions"),
]


@pytest.mark.parametrize("method, path", REQUESTS, ids=[f"{m} {p}" for m, p in REQUESTS])
def test_nginx_does_what_decide_predicts(gw, method, path):
    want = policy.decide(policy.parse(policy.gateway_conf()), method, path)
    status, text = raw(gw, method, path)
    if want.passed:
        assert status == 200, text
        if method != "HEAD":
            seen = json.loads(text)
            assert seen["path"].split("?")[0] == want.upstream_path   # vLLM sees only the canonical path
            assert seen["auth"] == "Bearer k"                         # the key travels on to vLLM
    else:
        assert status == want.status, text


def test_start_fails_clearly_on_a_configuration_nginx_refuses(nginx, upstream):
    bad = policy.gateway_conf().replace("keepalive 16;", "keepalive sixteen;")
    with pytest.raises(ServerError, match="nginx refuses the gateway's configuration"):
        gateway.LocalGateway(upstream, conf_text=bad).start()


def test_stop_leaves_nothing_behind(nginx, upstream):
    g = gateway.LocalGateway(upstream).start()
    pid, folder = g.proc.pid, g.dir
    g.stop()
    assert not folder.exists()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_a_missing_nginx_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_NGINX", str(tmp_path / "no-nginx"))
    with pytest.raises(ServerError, match="apt-get install -y nginx"):
        gateway.nginx_binary()
