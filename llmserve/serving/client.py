"""OpenAI-client helpers for a vLLM server: one chat, one timed stream, the model list.

Used by the capstone (book/stack.md, notebooks/stack-lab.ipynb), the service
chapter's smoke test and the load test (``llmserve.serving.loadtest``). Works
against the local CPU engine (``LocalVLLM.base_url``) and against the cluster
through a port-forward (``http://127.0.0.1:8000/v1``).

Timings of a stream (``stream_chat``):

* **TTFT** (time to first token): request sent → first chunk carrying text.
* **latency**: request sent → stream finished.
* **ITL / TPOT** (inter-token latency): ``(latency − TTFT) / (output tokens − 1)``.
* **tokens/s**: ``output tokens / latency``.

The output-token count is the one the server REPORTS in its usage block
(``stream_options={"include_usage": True}``), not the number of chunks: one
chunk can carry several tokens, or none (a token that is half of a UTF-8
character). Every failure becomes a :class:`~llmserve.core.errors.ServerError`
naming the fix (server down, wrong model name, wrong API key, timeout).
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from llmserve.core.errors import InputError, ServerError

#: The key the openai client sends when none is given (vLLM without --api-key ignores it).
NO_KEY = "EMPTY"
PORT_FORWARD_HINT = ("start the local engine (LocalVLLM) or, for the cluster, "
                     "`kubectl -n ai-platform port-forward svc/vllm-qwen25-coder-7b 8000:8000`")


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
    """One streamed chat completion and its timings (seconds)."""

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
    chunk_times_s: list[float] = field(default_factory=list)  # arrival of each text chunk, from send

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


def _client(base_url: str, api_key: str | None, timeout_s: float):
    import openai
    return openai.OpenAI(base_url=base_url, api_key=api_key or NO_KEY, timeout=timeout_s, max_retries=0)


class _StreamTimeout(Exception):
    """A stream ran past its total time budget (turned into a ServerError by ``explain``)."""


def list_models(base_url: str, api_key: str | None = None, timeout_s: float = 10) -> list[str]:
    """The model names the server serves (``GET /v1/models``)."""
    try:
        return [m.id for m in _client(base_url, api_key, timeout_s).models.list()]
    except Exception as exc:  # noqa: BLE001 - turned into one ServerError below
        raise explain(exc, base_url, model=None, timeout_s=timeout_s) from exc


def explain(exc: BaseException, base_url: str, model: str | None = None, timeout_s: float | None = None,
            api_key: str | None = None) -> ServerError:
    """Turn an openai-client exception into a :class:`ServerError` that names the fix."""
    import openai
    if isinstance(exc, ServerError):
        return exc
    if isinstance(exc, (openai.APITimeoutError, _StreamTimeout)):
        return ServerError(f"The server at {base_url} did not answer within {timeout_s} s.",
                           "Raise timeout_s or ask for fewer tokens (max_tokens); a busy server queues "
                           "requests (see vllm:num_requests_waiting in /metrics).")
    if isinstance(exc, openai.APIConnectionError):
        return ServerError(f"Cannot reach a server at {base_url} ({type(exc.__cause__ or exc).__name__}).",
                           f"Check the URL and port, then {PORT_FORWARD_HINT}.")
    if isinstance(exc, openai.AuthenticationError):
        which = "no API key was sent" if not api_key else "the API key sent was not accepted"
        return ServerError(f"The server at {base_url} answered 401 Unauthorized: {which}.",
                           "Use the key the server was started with (--api-key or VLLM_API_KEY; in the "
                           "cluster it comes from the Secret mounted into the Deployment).")
    if isinstance(exc, openai.NotFoundError):
        served = None
        try:
            served = [m.id for m in _client(base_url, api_key, timeout_s or 10).models.list()]
        except Exception:  # noqa: BLE001 - the listing is only a hint
            pass
        if served is not None and model is not None and model not in served:
            return ServerError(f"The server does not serve a model named {model!r}; it serves: "
                               f"{', '.join(served)}.",
                               "Use one of those names: it is the Deployment's --served-model-name "
                               "(or the --model path when no name is given).")
        return ServerError(f"The server at {base_url} answered 404 Not Found.",
                           "Check that base_url ends with /v1 (e.g. http://127.0.0.1:8000/v1).")
    if isinstance(exc, openai.APIStatusError):
        detail = getattr(exc, "message", str(exc))
        return ServerError(f"The server answered {exc.status_code}: {detail}",
                           "Read the message: a 400 usually means a parameter out of range "
                           "(e.g. prompt + max_tokens longer than --max-model-len).")
    return ServerError(f"Request to {base_url} failed: {type(exc).__name__}: {exc}",
                       f"Check that the server is up ({PORT_FORWARD_HINT}).")


def chat(base_url: str, model: str, messages: list[dict], api_key: str | None = None, *,
         max_tokens: int = 64, temperature: float = 0.0, timeout_s: float = 60,
         extra_body: dict | None = None) -> ChatResult:
    """One non-streamed chat completion."""
    _check_args(base_url, model, messages)
    t0 = time.perf_counter()
    try:
        resp = _client(base_url, api_key, timeout_s).chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens, temperature=temperature,
            extra_body=extra_body or None)
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, base_url, model, timeout_s, api_key) from exc
    latency = time.perf_counter() - t0
    choice = resp.choices[0]
    usage = resp.usage
    return ChatResult(text=choice.message.content or "", model=resp.model,
                      prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                      completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                      finish_reason=choice.finish_reason, latency_s=latency)


def stream_chat(base_url: str, model: str, messages: list[dict], api_key: str | None = None, *,
                max_tokens: int = 64, temperature: float = 0.0, timeout_s: float = 60,
                ignore_eos: bool = False, extra_body: dict | None = None) -> StreamResult:
    """One streamed chat completion, timed (see the module docstring for the definitions).

    ``timeout_s`` bounds the whole stream (the first token and every later one).

    ``ignore_eos=True`` (a vLLM extension) makes the server produce exactly
    ``max_tokens`` tokens: useful for load tests with equal-sized requests.
    """
    _check_args(base_url, model, messages)
    body = dict(extra_body or {})
    if ignore_eos:
        body["ignore_eos"] = True
    text_parts: list[str] = []
    chunk_times: list[float] = []
    usage = None
    finish = None
    served_model = model
    t0 = time.perf_counter()
    try:
        stream = _client(base_url, api_key, timeout_s).chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens, temperature=temperature, stream=True,
            stream_options={"include_usage": True}, extra_body=body or None)
        for chunk in stream:
            now = time.perf_counter() - t0
            if now > timeout_s:
                # The client's timeout bounds each read, not the whole stream: enforce the total here.
                stream.close()
                raise _StreamTimeout()
            served_model = getattr(chunk, "model", None) or served_model
            if getattr(chunk, "usage", None):
                usage = chunk.usage
            for choice in chunk.choices or []:
                content = getattr(choice.delta, "content", None)
                if content:
                    text_parts.append(content)
                    chunk_times.append(now)
                if choice.finish_reason:
                    finish = choice.finish_reason
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, base_url, model, timeout_s, api_key) from exc
    latency = time.perf_counter() - t0
    if usage is None:
        raise ServerError("The server sent no usage block with the stream, so the token count is unknown.",
                          "Use a vLLM server (it honours stream_options={'include_usage': True}).")
    completion = int(usage.completion_tokens or 0)
    ttft = chunk_times[0] if chunk_times else latency
    itl = (latency - ttft) / (completion - 1) if completion > 1 else None
    return StreamResult(text="".join(text_parts), model=served_model,
                        prompt_tokens=int(usage.prompt_tokens or 0), completion_tokens=completion,
                        finish_reason=finish, ttft_s=ttft, latency_s=latency, itl_s=itl,
                        tokens_per_s=completion / latency if latency > 0 else 0.0,
                        chunks=len(chunk_times), chunk_times_s=chunk_times)


def health(base_url: str, timeout_s: float = 5) -> bool:
    """True when ``GET /health`` answers 200 (vLLM serves it only once the weights are loaded)."""
    try:
        with urllib.request.urlopen(root_url(base_url) + "/health", timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def get_json(url: str, api_key: str | None = None, timeout_s: float = 10) -> Any:
    """GET a JSON document (e.g. ``/v1/models``) with the same error messages as the client."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise ServerError(f"{url} answered 401 Unauthorized.",
                              "Send the server's API key (api_key=…).") from exc
        raise ServerError(f"{url} answered {exc.code}.", "Check the URL.") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ServerError(f"Cannot reach {url}.", f"Check the URL and port, then {PORT_FORWARD_HINT}.") from exc
