"""Where the capstone's requests go: a port-forward to the cluster's Service, the local CPU engine, or nothing.

Used by notebooks/stack-lab.ipynb and book/stack.md. Layer: live. The choice is
:func:`llmserve.world.mode.detect_server`'s; :func:`open_target` opens it and returns a
:class:`Target` in every case. A target of kind ``none`` carries the reason there is
nothing to talk to and answers every request with ``None``, so the lab's cells call it
unconditionally and show what it says.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from llmserve.core.errors import ServerError
from llmserve.kvcache.planner import Plan
from llmserve.serving import client
from llmserve.serving.engine import LocalVLLM
from llmserve.serving.metrics import MetricsSnapshot, fetch_metrics
from llmserve.stack.apply import open_endpoint, read_api_key
from llmserve.stack.lab import LOCAL_LAB, LocalLab
from llmserve.stack.order import install_hint, new_api_key
from llmserve.world.mode import Mode, detect_server

Progress = Callable[[float, str], None]


@dataclass
class Target:
    """A root URL (``/health``, ``/metrics``), the OpenAI base URL, a key and a model, or nothing.

    ``kind`` is ``"cluster"``, ``"local"`` or ``"none"``; ``reason`` says why.
    """

    kind: str
    url: str | None = None
    api_key: str | None = None
    model: str | None = None
    plan: Plan | None = None           # the planner's prediction, for the local engine
    server: LocalVLLM | None = None    # the engine, when local
    reason: str = ""
    _closers: list = field(default_factory=list, repr=False)

    def __bool__(self) -> bool:
        return self.kind != "none"

    @property
    def base_url(self) -> str | None:
        return self.url.rstrip("/") + "/v1" if self.url else None

    def describe(self) -> str:
        if not self:
            return install_hint(self.reason)
        return f"{self.kind}: {self.url} (OpenAI base URL {self.base_url}) — {self.reason}"

    def served_model(self) -> str | None:
        """The first model the server lists (``GET /v1/models``), remembered as :attr:`model`."""
        if self and self.model is None:
            self.model = client.list_models(self.base_url, self.api_key)[0]
        return self.model

    def chat(self, messages: list[dict], max_tokens: int = 32) -> client.ChatResult | None:
        return client.chat(self.base_url, self.served_model(), messages, self.api_key,
                           max_tokens=max_tokens) if self else None

    def chat_without_key(self, messages: list[dict]) -> ServerError | None:
        """The error the server answers a request without the API key with (None: nothing to ask,
        or the server did not refuse)."""
        if not self:
            return None
        try:
            client.chat(self.base_url, self.served_model(), messages, api_key=None, max_tokens=1)
        except ServerError as err:
            return err
        return None

    def stream(self, messages: list[dict], max_tokens: int = 64) -> client.StreamResult | None:
        return client.stream_chat(self.base_url, self.served_model(), messages, self.api_key,
                                  max_tokens=max_tokens, ignore_eos=True) if self else None

    def metrics(self) -> MetricsSnapshot | None:
        return fetch_metrics(self.url) if self else None

    def close(self) -> str:
        """Stop the local engine or the port-forward. Never touches the cluster's objects."""
        while self._closers:
            self._closers.pop()()
        return {"local": "stopped the local vLLM engine",
                "cluster": "closed the port-forward (the stack keeps running: see cleanup)"}.get(
                    self.kind, "nothing to close")


def choose_target(mode: Mode) -> tuple[str, str]:
    """``(kind, reason)``: "cluster", "local" or "none" (see :func:`llmserve.world.mode.detect_server`)."""
    return detect_server(mode)


def open_target(mode: Mode, cluster=None, progress: Progress | None = None) -> Target:
    """Open what :func:`choose_target` chose: a port-forward ("cluster"), the CPU engine ("local"), or nothing."""
    kind, reason = choose_target(mode)
    if kind == "cluster":
        return open_cluster(cluster, reason=reason)
    if kind == "local":
        return open_local(progress=progress, reason=reason)
    return Target("none", reason=reason)


def open_local(lab: LocalLab = LOCAL_LAB, progress: Progress | None = None, api_key: str | None = None,
               reason: str = "the local CPU engine") -> Target:
    """Start the real CPU vLLM engine with the tiny random model and ``lab``'s small KV cache."""
    tiny = lab.tiny_shape()
    shape, dtype = tiny.model_shape(), tiny.kv_dtype()
    key = api_key or new_api_key()
    server = LocalVLLM(tiny, max_model_len=lab.max_model_len, kv_cache_memory_bytes=lab.kv_cache_bytes(shape, dtype),
                       block_size=lab.block_size, api_key=key, progress=progress, extra_args=lab.engine_args())
    server.start()
    return Target("local", server.url, key, model=server.model, plan=lab.plan(shape, dtype), server=server,
                  reason=reason, _closers=[server.stop])


def open_cluster(cluster, local_port: int = 0, reason: str = "a port-forward to the vLLM Service") -> Target:
    """A port-forward to the vLLM Service and the key from ``$VLLM_API_KEY`` or the Secret."""
    key = read_api_key(cluster)
    forward = open_endpoint(cluster, local_port)
    url = forward.__enter__()
    return Target("cluster", str(url), key, reason=reason, _closers=[lambda: forward.__exit__(None, None, None)])


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOG_PREFIX = re.compile(r"^.*?\[[\w./-]+:\d+\]\s*")


def startup_printer(every_s: float = 15.0, out: Callable[[str], None] = print) -> Progress:
    """A progress callback for the local engine's start: one clean line every ``every_s`` seconds.

    vLLM's log lines carry colour codes and a ``(process) LEVEL date [file:line]``
    prefix; this keeps the message only.
    """
    state = {"last": -every_s}

    def progress(elapsed: float, status: str) -> None:
        if status != "ready" and elapsed - state["last"] < every_s:
            return
        state["last"] = elapsed
        text = _LOG_PREFIX.sub("", _ANSI.sub("", status.replace("starting: ", "", 1))).strip()
        out(f"[{elapsed:4.0f} s] {'ready' if status == 'ready' else 'starting: ' + text[:90]}")
    return progress
