"""A stand-in for vLLM's OpenAI server, behind a fake port-forward: ``/health``, ``/v1/models``, ``/metrics``.

It behaves as vLLM's AuthenticationMiddleware does
(vllm/entrypoints/serve/middleware/authenticate.py, 0.32.0): paths under ``/v1``
need ``Authorization: Bearer <key>`` and get ``401 {"error": "Unauthorized"}``
otherwise; ``/health`` and ``/metrics`` are open. ``/v1/models`` answers in the
OpenAI list shape vLLM uses (``{"object": "list", "data": [{"id": …}]}``).
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

KEY = "test-key"
MODEL = "qwen25-coder-7b"


class FakeVllm:
    """A loopback HTTP server; :attr:`address` is ``(host, port)``; :attr:`paths` what it was asked.

    ``key`` is the API key, or a function returning it (e.g. read from a Secret of the fake cluster).
    """

    def __init__(self, key: str | Callable[[], str] = KEY, model: str = MODEL) -> None:
        outer = self
        self.paths: list[str] = []
        current_key = key if callable(key) else (lambda: key)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.paths.append(self.path)
                if self.path.startswith("/v1") and self.headers.get("Authorization") != f"Bearer {current_key()}":
                    return self._send(401, {"error": "Unauthorized"})
                if self.path == "/health":
                    return self._send(200, None)
                if self.path == "/v1/models":
                    return self._send(200, {"object": "list", "data": [{"id": model, "object": "model"}]})
                if self.path == "/metrics":
                    return self._send(200, None, b"# HELP vllm:num_requests_running Requests running.\n"
                                                 b"vllm:num_requests_running 0.0\n")
                return self._send(404, {"detail": "Not Found"})

            def _send(self, status, body, raw: bytes | None = None):
                data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.address = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)

    @property
    def url(self) -> str:
        return "http://%s:%d" % self.address

    def __enter__(self) -> "FakeVllm":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
