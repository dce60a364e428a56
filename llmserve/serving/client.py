"""A small OpenAI-API client for a vLLM server: one chat, one timed stream, the model list, /health.

Used by the capstone (book/stack.md, notebooks/stack-lab.ipynb), the load test
(:mod:`llmserve.serving.loadtest`) and the tests of the local engine. Works
against the local CPU engine (``LocalVLLM.base_url``) and against the cluster
through a port-forward (``http://127.0.0.1:8000/v1``). Layer: live.

Why not the ``openai`` package: timings must be the server's, not the client's.
Created per request, as the course first did, the openai client spends tens of
milliseconds (its HTTP pool, its TLS context, and on first use its imports)
inside the timed region, and on two busy cores the stream's chunks then pile up
and arrive in one lump, so "time to first token" becomes nearly the whole
request. Here a :class:`Connection` is opened **before** the clock starts and
kept alive between requests, and the server-sent events are read line by line
as they arrive, the way vLLM's own benchmark reads them
(``vllm/benchmarks/lib/endpoint_request_func.py``). GETs go through
:func:`llmserve.core.http.get`; the POSTs to ``/v1/chat/completions`` (one of
them streamed) are the only HTTP code here.

Timings of a stream (:func:`stream_chat`), all from the moment the request is sent:

* **TTFT** (time to first token): until the first chunk that carries text.
* **latency**: until the last chunk that carries text (vLLM's benchmark ends there too).
* **ITL** (inter-token latency, per token): ``(latency − TTFT) / (output tokens − 1)``;
  vLLM's benchmark calls this figure TPOT.
* **chunk gaps**: the time between consecutive text chunks. vLLM's benchmark calls
  their distribution "ITL"; with ``--stream-interval N`` a chunk carries up to N tokens.
* **tokens/s**: ``output tokens / latency``.

The output-token count is the one the server REPORTS in its usage block
(``stream_options={"include_usage": True}``), not the number of chunks. Every
failure becomes a :class:`~llmserve.core.errors.ServerError` naming the fix.
"""
from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator
from urllib.parse import urlparse

from llmserve.core import http as course_http
from llmserve.core.errors import InputError, ServerError


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    latency_s: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StreamResult:
    """One streamed chat completion and its timings (seconds since the request was sent)."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int          # as reported by the server's usage block
    finish_reason: str | None
    ttft_s: float
    latency_s: float
    itl_s: float | None             # (latency − ttft) / (completion_tokens − 1); None for < 2 tokens
    tokens_per_s: float             # completion_tokens / latency
    chunks: int                     # chunks with text (NOT the token count)
    chunk_times_s: list[float] = field(default_factory=list)  # arrival of each text chunk

    @property
    def chunk_gaps_s(self) -> list[float]:
        """Time between consecutive text chunks (what vLLM's benchmark reports as ITL)."""
        t = self.chunk_times_s
        return [b - a for a, b in zip(t, t[1:])]

    def to_dict(self) -> dict:
        return asdict(self)


def root_url(base_url: str) -> str:
    """``http://host:port`` from ``http://host:port/v1`` (where /health and /metrics live)."""
    url = base_url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def _check_args(base_url: str, model: str, messages: list) -> None:
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise InputError(f"base_url must be an http(s) URL, got {base_url!r}.",
                         "Use e.g. http://127.0.0.1:8000/v1 (LocalVLLM.base_url gives it).")
    if not isinstance(model, str) or not model:
        raise InputError("model must be the served model name.",
                         "Use the --served-model-name the server was started with (list_models() shows it).")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and "role" in m and "content" in m for m in messages):
        raise InputError("messages must be a non-empty list of {'role': …, 'content': …} dicts.",
                         'Use e.g. [{"role": "user", "content": "Hello"}].')


def list_models(base_url: str, api_key: str | None = None, timeout_s: float = 10) -> list[str]:
    """The model names the server serves (``GET /v1/models``)."""
    return course_http.model_ids(course_http.get(base_url, "/models", timeout=timeout_s, api_key=api_key))


def health(base_url: str, timeout_s: float = 5) -> bool:
    """True when ``GET /health`` answers 200 (vLLM serves it only once the weights are loaded)."""
    try:
        return course_http.get(root_url(base_url), "/health", timeout=timeout_s).status == 200
    except ServerError:
        return False


def _answer_error(url: str, status: int, body: str, base_url: str, model: str | None,
                  api_key: str | None, timeout_s: float) -> ServerError:
    """A non-200 answer to a chat request as a ServerError: the model-name and parameter cases
    need the chat's context; every other status reads as :func:`llmserve.core.http.http_error`."""
    if status == 404 and model is not None:
        try:
            served = list_models(base_url, api_key, timeout_s)
        except ServerError:
            served = None
        if served is not None and model not in served:
            return ServerError(f"The server does not serve a model named {model!r}; it serves: "
                               f"{', '.join(served)}.",
                               "Use one of those names: it is the Deployment's --served-model-name "
                               "(or the --model path when no name is given).")
    if status == 400:
        return ServerError(f"{url} answered 400: {body[:300]}",
                           "A parameter is out of range: often prompt + max_tokens is longer than "
                           "the server's --max-model-len.")
    return course_http.http_error(url, status, body, api_key)


class Connection:
    """One keep-alive HTTP/1.1 connection to the server of ``base_url``, for chat requests.

    Open it (:meth:`open`) before timing anything; reuse it for many requests, one at a
    time (it is not shared between threads). A request that fails closes it; the next
    one reconnects.
    """

    def __init__(self, base_url: str, timeout_s: float = 60) -> None:
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InputError(f"base_url must be an http(s) URL, got {base_url!r}.",
                             "Use e.g. http://127.0.0.1:8000/v1 (LocalVLLM.base_url gives it).")
        self.base_url = base_url.rstrip("/")
        self.path = parsed.path.rstrip("/")
        self.timeout_s = timeout_s
        kind = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        self._conn = kind(parsed.hostname, parsed.port, timeout=timeout_s)

    def open(self) -> "Connection":
        """Connect now (outside any timed region); a refused connection raises a ServerError."""
        if self._conn.sock is None:
            try:
                self._conn.connect()
            except OSError as exc:
                raise course_http.connection_error(self.base_url, exc, self.timeout_s) from None
        return self

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Connection":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def _send(self, path: str, body: dict, api_key: str | None) -> http.client.HTTPResponse:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._conn.request("POST", self.path + path, json.dumps(body).encode(), headers)
        return self._conn.getresponse()

    def post(self, path: str, body: dict, api_key: str | None) -> tuple[int, str]:
        """POST a JSON body; ``(status, answer text)``. Connection failures raise a ServerError."""
        resp = self.start(path, body, api_key)
        try:
            return resp.status, resp.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise course_http.connection_error(self.base_url + path, exc, self.timeout_s) from None

    def start(self, path: str, body: dict, api_key: str | None) -> http.client.HTTPResponse:
        """POST and return the response once its status line and headers are in (the body not yet read)."""
        try:
            return self._send(path, body, api_key)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise course_http.connection_error(self.base_url + path, exc, self.timeout_s) from None

    def events(self, resp: http.client.HTTPResponse, deadline: float) -> Iterator[tuple[float, dict]]:
        """Each server-sent event of a 200 answer as ``(time.perf_counter() at arrival, payload)``.

        Reads whatever has arrived (``read1``) and splits it into lines, so that events that
        arrived together are handled in one wake-up, each stamped with the moment its bytes
        were read, as vLLM's benchmark does with ``iter_any``. ``deadline`` (a
        ``perf_counter`` value) bounds the whole stream: the socket timeout bounds each read only.
        """
        pending = b""
        try:
            while True:
                block = resp.read1(65536)
                now = time.perf_counter()
                if now > deadline:
                    raise socket.timeout("the stream ran past its time budget")
                if not block:
                    return
                *lines, pending = (pending + block).split(b"\n")
                for line in lines:
                    data = line[5:].strip() if line.startswith(b"data:") else b""
                    if data and data != b"[DONE]":      # blank separators, SSE comments, the end mark
                        yield now, _event(data, self.base_url)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise course_http.connection_error(self.base_url, exc, self.timeout_s) from None


def _event(data: bytes, url: str) -> dict:
    try:
        return json.loads(data)
    except ValueError:
        raise ServerError(f"{url} sent a stream event that is not JSON: {data[:120]!r}",
                          "Point the client at a vLLM server's /v1 (a proxy may be rewriting the stream).") from None


def chat(base_url: str, model: str, messages: list[dict], api_key: str | None = None, *,
         max_tokens: int = 64, temperature: float = 0.0, timeout_s: float = 60,
         extra_body: dict | None = None) -> ChatResult:
    """One non-streamed chat completion."""
    _check_args(base_url, model, messages)
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature,
            **(extra_body or {})}
    with Connection(base_url, timeout_s) as conn:
        t0 = time.perf_counter()
        status, text = conn.post("/chat/completions", body, api_key)
        latency = time.perf_counter() - t0
    if status != 200:
        raise _answer_error(base_url + "/chat/completions", status, text, base_url, model, api_key, timeout_s)
    answer = json.loads(text)
    choice, usage = answer["choices"][0], answer.get("usage") or {}
    return ChatResult(text=(choice.get("message") or {}).get("content") or "", model=answer.get("model", model),
                      prompt_tokens=int(usage.get("prompt_tokens") or 0),
                      completion_tokens=int(usage.get("completion_tokens") or 0),
                      finish_reason=choice.get("finish_reason"), latency_s=latency)


def stream_chat(base_url: str, model: str, messages: list[dict], api_key: str | None = None, *,
                max_tokens: int = 64, temperature: float = 0.0, timeout_s: float = 60,
                ignore_eos: bool = False, extra_body: dict | None = None,
                connection: Connection | None = None) -> StreamResult:
    """One streamed chat completion, timed (see the module docstring for the definitions).

    ``timeout_s`` bounds the whole stream. ``ignore_eos=True`` (a vLLM extension) makes the
    server produce exactly ``max_tokens`` tokens: equal work per request in a load test.
    ``connection``: an open :class:`Connection` to reuse (the load test keeps one per worker);
    without one, a connection is opened before the clock starts and closed after.
    """
    _check_args(base_url, model, messages)
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature,
            "stream": True, "stream_options": {"include_usage": True}, **(extra_body or {})}
    if ignore_eos:
        body["ignore_eos"] = True
    own = connection is None
    conn = (connection or Connection(base_url, timeout_s)).open()
    text_parts: list[str] = []
    chunk_times: list[float] = []
    usage, finish, served_model = None, None, model
    try:
        t0 = time.perf_counter()        # the clock starts here: the body is encoded, the socket open
        resp = conn.start("/chat/completions", body, api_key)
        if resp.status != 200:
            text = resp.read().decode("utf-8", "replace")
            raise _answer_error(base_url + "/chat/completions", resp.status, text, base_url, model, api_key,
                                timeout_s)
        for when, event in conn.events(resp, deadline=t0 + timeout_s):
            served_model = event.get("model") or served_model
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    text_parts.append(content)
                    chunk_times.append(when - t0)
                finish = choice.get("finish_reason") or finish
    finally:
        if own:
            conn.close()
    if usage is None:
        raise ServerError("The server sent no usage block with the stream, so the token count is unknown.",
                          "Use a vLLM server (it honours stream_options={'include_usage': True}).")
    completion = int(usage.get("completion_tokens") or 0)
    latency = chunk_times[-1] if chunk_times else time.perf_counter() - t0
    ttft = chunk_times[0] if chunk_times else latency
    itl = (latency - ttft) / (completion - 1) if completion > 1 else None
    return StreamResult(text="".join(text_parts), model=served_model,
                        prompt_tokens=int(usage.get("prompt_tokens") or 0), completion_tokens=completion,
                        finish_reason=finish, ttft_s=ttft, latency_s=latency, itl_s=itl,
                        tokens_per_s=completion / latency if latency > 0 else 0.0,
                        chunks=len(chunk_times), chunk_times_s=chunk_times)
