"""The client without a vLLM server: argument checks, closed ports, and a stand-in server's stream.

The stand-in answers ``/v1/chat/completions`` with server-sent events in the shape vLLM's
OpenAI server sends them (``data: {json}`` lines, a final usage chunk, ``data: [DONE]``;
vllm/entrypoints/openai/chat_completion/serving.py), paced by the test, so the timings
can be checked against a known schedule. The events are CONSTRUCTED, not recorded.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmserve.core.errors import InputError, ServerError
from llmserve.serving.client import Connection, chat, stream_chat
from llmserve.serving.engine import free_port

GAP_S = 0.05       # the stand-in sends one text chunk every 50 ms
CHUNKS = 5


@pytest.fixture
def paced_server():
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body["model"] != "m":
                return self._answer(404, {"error": {"message": f"The model `{body['model']}` does not exist."}})
            if body.get("max_tokens", 0) > 100:
                return self._answer(400, {"error": {"message": "max_tokens is too large"}})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._event({"model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
            for i in range(CHUNKS):
                time.sleep(GAP_S)
                self._event({"model": "m", "choices": [{"index": 0, "delta": {"content": f"t{i} "},
                                                        "finish_reason": "length" if i == CHUNKS - 1 else None}]})
            self._event({"model": "m", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 10}})
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")

        def do_GET(self):  # noqa: N802
            self._answer(200, {"object": "list", "data": [{"id": "m"}]})

        def _answer(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _event(self, payload):
            self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

        def _chunk(self, data: bytes):
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


HI = [{"role": "user", "content": "hi"}]


def test_chunks_are_timed_as_they_arrive_not_in_one_lump(paced_server):
    r = stream_chat(paced_server, "m", HI, max_tokens=10)
    assert r.text == "t0 t1 t2 t3 t4 " and r.chunks == CHUNKS and r.completion_tokens == 10
    gaps = r.chunk_gaps_s
    assert len(gaps) == CHUNKS - 1 and all(g > 0.6 * GAP_S for g in gaps)       # paced, not lumped
    assert r.ttft_s >= GAP_S * 0.8 and r.latency_s == r.chunk_times_s[-1]
    assert r.itl_s == pytest.approx((r.latency_s - r.ttft_s) / 9)               # reported tokens, not chunks
    assert r.finish_reason == "length" and r.prompt_tokens == 7


def test_a_kept_alive_connection_is_reused(paced_server):
    with Connection(paced_server) as conn:
        sock = conn._conn.sock
        for _ in range(2):
            assert stream_chat(paced_server, "m", HI, connection=conn).chunks == CHUNKS
        assert conn._conn.sock is sock


def test_answers_that_are_not_200_name_the_fix(paced_server):
    with pytest.raises(ServerError, match="does not serve a model named 'x'; it serves: m"):
        stream_chat(paced_server, "x", HI)
    with pytest.raises(ServerError, match="answered 400") as err:
        chat(paced_server, "m", HI, max_tokens=500)
    assert "--max-model-len" in err.value.fix


def test_the_whole_stream_is_bounded(paced_server):
    with pytest.raises(ServerError, match="did not answer within"):
        stream_chat(paced_server, "m", HI, timeout_s=GAP_S * 2)


def test_client_input_checks():
    with pytest.raises(InputError):
        chat("127.0.0.1:8000", "m", [{"role": "user", "content": "x"}])
    with pytest.raises(InputError):
        chat("http://127.0.0.1:8000/v1", "", [{"role": "user", "content": "x"}])
    with pytest.raises(InputError):
        chat("http://127.0.0.1:8000/v1", "m", [{"content": "x"}])


def test_chat_to_closed_port_is_a_server_error():
    with pytest.raises(ServerError, match="nothing listens there"):
        chat(f"http://127.0.0.1:{free_port()}/v1", "m", [{"role": "user", "content": "x"}], timeout_s=3)
