"""N real CPU vLLM engines behind a real ``vllm-router`` process, on loopback, stopped afterwards.

Used by the routing chapter (book/routing.md, notebooks/routing-lab.ipynb) and by part 2
(observability and autoscaling), whose control loop grows and shrinks the fleet. Layer: live
(server processes). Typical use::

    with Fleet(engines=2, policy="cache_aware", settings=EngineSettings(kv_cache_blocks=12)) as fleet:
        stream_chat(fleet.base_url, fleet.model, messages)     # through the router
        fleet.engine_urls                                      # each engine's root (/metrics)
        fleet.restart_router("round_robin")                    # same engines, new router
        extra = fleet.add_engine()                             # one more, registered with the router

What it runs:

* **engines**: :class:`llmserve.serving.engine.LocalVLLM`, the same CPU vLLM 0.32 server the
  other chapters start, all serving one model directory (the tiny model, built once and
  only read), with ``--enable-prefix-caching`` stated although 0.32 turns it on by default
  (``CacheConfig.enable_prefix_caching = True`` in vllm/config/cache.py), a small KV cache
  given in blocks, ``--enable-scale-out`` (the render endpoint the router's cache-aware policy
  tokenizes with) and, as every local engine, the CPU worker inside the engine core with one
  OpenMP thread (:data:`llmserve.serving.engine.LOCAL_ENGINE_ENV`). They start concurrently.
* **router**: :class:`llmserve.routing.router.Router`, one ``vllm-router`` process told the
  engines with ``--worker-urls``; :meth:`Fleet.add_engine` and :meth:`Fleet.remove_engine`
  register and deregister engines through its admin API while it runs.

Everything listens on 127.0.0.1 only. Every process runs in its own process group and is
stopped by :meth:`Fleet.stop` (also when the ``with`` body raises) and, for anything still
running when Python exits, by the engines' and the router's own ``atexit`` hooks
(:mod:`llmserve.world.processes`). Bounds: at most :data:`MAX_ENGINES`
engines, a start-up time limit per process.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from llmserve.core.errors import ServerError, require
from llmserve.core.vllm import CPU_DEFAULT_BLOCK_SIZE
from llmserve.kvcache.formula import kv_bytes_per_token
from llmserve.routing.router import ROUTER_VERSION, Router, router_binary
from llmserve.serving.engine import LocalVLLM
from llmserve.serving.metrics import MetricsSnapshot, fetch_metrics
from llmserve.serving.tinymodel import TINY, ensure_tiny_model

#: More engines than this do not fit two cores and 24 GB next to everything else.
MAX_ENGINES = 4
SERVED_MODEL = "tiny-qwen2"

#: Router and its names are part of this module's API too (part 2 imports them from here).
__all__ = ["MAX_ENGINES", "ROUTER_VERSION", "EngineSettings", "Fleet", "Router", "router_binary"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EngineSettings:
    """How every engine of a fleet is started (one engine may override fields: :meth:`Fleet.add_engine`).

    ``kv_cache_blocks``: the KV cache in blocks of ``block_size`` tokens (passed to vLLM as
    ``--kv-cache-memory-bytes`` = blocks × block size × the tiny model's bytes per token, so
    vLLM reports exactly that many blocks). ``block_size=None`` keeps vLLM's CPU default
    (128 tokens). ``max_num_seqs=None`` keeps vLLM's default. ``scale_out`` passes
    ``--enable-scale-out``: the router's cache-aware policy tokenizes each request through the
    engine's ``POST /v1/chat/completions/render``, which vLLM 0.32 serves only with that flag
    (vllm/entrypoints/scale_out/factories.py; without it every decision falls back to load).
    """

    kv_cache_blocks: int = 12
    block_size: int | None = None
    max_model_len: int = 1024
    max_num_seqs: int | None = None
    prefix_caching: bool = True
    scale_out: bool = True
    startup_timeout_s: float = 300
    extra_args: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)

    @property
    def tokens_per_block(self) -> int:
        return self.block_size or CPU_DEFAULT_BLOCK_SIZE

    def kv_cache_bytes(self) -> int:
        return self.kv_cache_blocks * self.tokens_per_block * kv_bytes_per_token(TINY.model_shape(), TINY.kv_dtype())

    def check(self) -> None:
        require(isinstance(self.kv_cache_blocks, int) and self.kv_cache_blocks > 0,
                f"kv_cache_blocks must be a whole number > 0, got {self.kv_cache_blocks!r}.", "Use e.g. 12.")
        need = -(-self.max_model_len // self.tokens_per_block)
        require(self.kv_cache_blocks >= need,
                f"{self.kv_cache_blocks} blocks of {self.tokens_per_block} tokens cannot hold one request of "
                f"max_model_len {self.max_model_len} ({need} blocks): vLLM refuses to start.",
                f"Give at least {need} blocks, or lower max_model_len.")


class Fleet:
    """``engines`` CPU vLLM engines and one router in front of them (see the module docstring)."""

    def __init__(self, engines: int = 2, *, policy: str = "cache_aware", settings: EngineSettings | None = None,
                 per_engine: Sequence[dict] = (), router_args: Sequence[str] = (),
                 progress: Progress | None = None) -> None:
        require(isinstance(engines, int) and 1 <= engines <= MAX_ENGINES,
                f"engines must be between 1 and {MAX_ENGINES}, got {engines!r}.",
                "Two or three engines show routing; more do not fit two cores.")
        self.settings = settings or EngineSettings()
        self.settings.check()
        require(len(per_engine) <= engines, "per_engine has more entries than there are engines.",
                "Give one dict of EngineSettings fields per engine at most.")
        self.count = engines
        self.policy = policy
        self.per_engine = [dict(p) for p in per_engine]
        self.router_args = list(router_args)
        self.progress = progress
        self.engines: list[LocalVLLM] = []
        self.engine_settings: dict[str, EngineSettings] = {}
        self.router: Router | None = None
        self.model = SERVED_MODEL
        self.model_dir: Path | None = None
        self.startup_s: float | None = None

    # ---------------------------------------------------------------- info
    @property
    def url(self) -> str:
        """The router's root URL (``/health``, ``/list_workers``)."""
        return self._router().url

    @property
    def base_url(self) -> str:
        """Where clients send OpenAI requests: the router's ``…/v1``."""
        return self._router().base_url

    @property
    def router_metrics_url(self) -> str:
        return self._router().metrics_url

    @property
    def engine_urls(self) -> list[str]:
        """Each running engine's root URL (``/metrics``, ``/health``), in start order."""
        return [e.url for e in self.engines]

    def _router(self) -> Router:
        if self.router is None:
            raise ServerError("The fleet is not started.", "Use `with Fleet(...) as fleet:` or call start().")
        return self.router

    def describe(self) -> str:
        lines = [f"router {ROUTER_VERSION} ({self.router.policy if self.router else self.policy}) "
                 f"at {self.router.url if self.router else '-'}"]
        for e in self.engines:
            s = self.engine_settings[e.url]
            lines.append(f"  engine {e.url}: {s.kv_cache_blocks} blocks × {s.tokens_per_block} tokens, "
                         f"prefix caching {'on' if s.prefix_caching else 'off'}, started in {e.startup_s:.0f} s")
        return "\n".join(lines)

    # ---------------------------------------------------------------- lifecycle
    def _say(self, text: str) -> None:
        if self.progress:
            self.progress(text)

    def _engine(self, settings: EngineSettings) -> LocalVLLM:
        args = ["--enable-prefix-caching" if settings.prefix_caching else "--no-enable-prefix-caching",
                *(["--enable-scale-out"] if settings.scale_out else []), *settings.extra_args]
        return LocalVLLM(TINY, model_dir=self.model_dir, served_model_name=self.model,
                         max_model_len=settings.max_model_len, kv_cache_memory_bytes=settings.kv_cache_bytes(),
                         block_size=settings.block_size, max_num_seqs=settings.max_num_seqs,
                         extra_args=args, startup_timeout_s=settings.startup_timeout_s,
                         env=dict(settings.env))

    def _start_engines(self, settings: list[EngineSettings]) -> list[LocalVLLM]:
        """Start engines concurrently; if one fails, stop the others it started and raise its error."""
        engines = [self._engine(s) for s in settings]
        with ThreadPoolExecutor(max_workers=len(engines)) as pool:
            futures = [pool.submit(e.start) for e in engines]
            errors = []
            for f in futures:
                try:
                    f.result()
                except BaseException as exc:  # noqa: BLE001 - collected, the others are stopped, then raised
                    errors.append(exc)
        if errors:
            for e in engines:
                e.stop()
            raise errors[0]
        for e, s in zip(engines, settings):
            self.engine_settings[e.url] = s
        return engines

    def start(self) -> "Fleet":
        if self.router is not None:
            return self
        t0 = time.monotonic()
        try:
            self.model_dir = ensure_tiny_model(TINY)
            plan = [replace(self.settings, **(self.per_engine[i] if i < len(self.per_engine) else {}))
                    for i in range(self.count)]
            for s in plan:
                s.check()
            self._say(f"starting {self.count} vLLM engine(s) at once (20-90 s on two busy cores)…")
            self.engines = self._start_engines(plan)
            self._say("engines ready in " + ", ".join(f"{e.startup_s:.0f} s" for e in self.engines)
                      + f"; starting vllm-router ({self.policy})…")
            self.router = Router(self.engine_urls, self.policy, extra_args=self.router_args).start()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        self._say(f"fleet ready in {self.startup_s:.0f} s: router {self.router.url}")
        return self

    def restart_router(self, policy: str | None = None) -> Router:
        """Stop the router and start a new one (same engines, ``policy`` or the same): it remembers nothing."""
        old = self._router()
        old.stop()
        self.policy = policy or old.policy
        self.router = Router(self.engine_urls, self.policy, extra_args=self.router_args).start()
        return self.router

    def add_engine(self, **overrides) -> LocalVLLM:
        """Start one more engine (the fleet's settings, with ``overrides``), then register it with the router.

        Returns the engine; ``engine.startup_s`` is its cold start (process start to /health).
        """
        require(len(self.engines) < MAX_ENGINES, f"The fleet already has {MAX_ENGINES} engines.",
                "Remove one first; more do not fit two cores.")
        settings = replace(self.settings, **overrides)
        settings.check()
        engine = self._start_engines([settings])[0]
        try:
            self._router().add_worker(engine.url)
        except BaseException:
            engine.stop()
            self.engine_settings.pop(engine.url, None)
            raise
        self.engines.append(engine)
        return engine

    def remove_engine(self, engine: LocalVLLM | str | None = None) -> None:
        """Deregister an engine from the router first (no new request goes there), then stop it.

        ``engine``: the engine, its URL, or None for the last one started.
        """
        require(self.engines, "The fleet has no engine to remove.", "Start the fleet first.")
        target = engine if isinstance(engine, LocalVLLM) else (
            self.engines[-1] if engine is None else next((e for e in self.engines if e.url == engine), None))
        require(target in self.engines, f"{engine!r} is not an engine of this fleet.",
                f"Use one of: {', '.join(self.engine_urls)}.")
        if self.router is not None and self.router.is_running():
            self.router.remove_worker(target.url)
        self.engines.remove(target)
        self.engine_settings.pop(target.url, None)
        target.stop()

    def stop(self) -> None:
        """Stop the router, then every engine (concurrently); safe to call twice."""
        if self.router is not None:
            self.router.stop()
        engines, self.engines = self.engines, []
        if engines:
            with ThreadPoolExecutor(max_workers=len(engines)) as pool:
                list(pool.map(lambda e: e.stop(), engines))

    def __enter__(self) -> "Fleet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- measurements
    def engine_metrics(self) -> dict[str, MetricsSnapshot]:
        """Each engine's ``/metrics`` now, by engine URL."""
        return {url: fetch_metrics(url) for url in self.engine_urls}

    def __repr__(self) -> str:
        return f"Fleet({len(self.engines)} engines, router={self.router!r})"

