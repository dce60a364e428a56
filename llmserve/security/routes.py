"""Pure rules: what vLLM 0.32's API key guards, and what it leaves open (the route table).

Used by the API-key chapter (book/api-key.md, notebooks/api-key-lab.ipynb) and by the
gateway's policy check (``llmserve.security.policy``).

vLLM checks ``Authorization: Bearer <key>`` in one ASGI middleware,
``AuthenticationMiddleware`` (vllm/entrypoints/serve/middleware/authenticate.py), which
``init_entrypoints_middleware`` (vllm/entrypoints/serve/middleware/register.py) installs
when ``--api-key`` or ``VLLM_API_KEY`` is set. It asks for the key only when the path
starts with one of :data:`GUARDED_PREFIXES` (and never for ``OPTIONS``). Every other
route of the same server answers without a key, among them ``POST /invocations``
(the SageMaker route, vllm/entrypoints/serve/sagemaker/api_router.py), which runs the
same chat and completion handlers as ``/v1``.

:data:`ROUTES` is the table for the course's case: a generating model, default flags,
no ``VLLM_SERVER_DEV_MODE``, no LoRA or profiler routes. A test builds the app of the
installed vLLM (``llmserve.security.vllm_app``) and compares it with this table, path
by path and method by method.
"""
from __future__ import annotations

from dataclasses import dataclass

#: ``GUARDED_PREFIX`` in vllm/entrypoints/serve/middleware/authenticate.py (0.32.0).
GUARDED_PREFIXES = ("/v1", "/v2", "/inference", "/cohere")

#: What a route is for, in the order the book's table lists them.
KINDS = ("inference", "control", "utility", "render", "docs")


def is_guarded(path: str) -> bool:
    """True when vLLM asks for the key on ``path``: the middleware's own test, ``str.startswith``.

    It is a plain string prefix, so ``/v1systemone`` would be guarded too; no such route exists.
    """
    return path.startswith(GUARDED_PREFIXES)


@dataclass(frozen=True)
class Route:
    """One route of vLLM's HTTP server."""

    path: str
    methods: tuple[str, ...]
    kind: str
    what: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")

    @property
    def guarded(self) -> bool:
        return is_guarded(self.path)


def _r(path: str, methods: str, kind: str, what: str) -> Route:
    return Route(path, tuple(methods.split()), kind, what)


#: The routes vLLM 0.32.0 registers for a generating model with default flags.
ROUTES: tuple[Route, ...] = (
    # Inference: the model runs.
    _r("/v1/chat/completions", "POST", "inference", "OpenAI chat completions"),
    _r("/v1/completions", "POST", "inference", "OpenAI text completions"),
    _r("/v1/chat/completions/batch", "POST", "inference", "several chat completions in one request"),
    _r("/v1/responses", "POST", "inference", "OpenAI Responses API"),
    _r("/v1/responses/{response_id}", "GET", "inference", "read a stored response"),
    _r("/v1/responses/{response_id}/cancel", "POST", "inference", "cancel a background response"),
    _r("/v1/messages", "POST", "inference", "Anthropic-compatible messages"),
    _r("/v1/messages/count_tokens", "POST", "inference", "Anthropic-compatible token count"),
    _r("/v1/systemone", "POST", "inference", "structured decisions"),
    _r("/inference/v1/generate", "POST", "inference", "token-in, token-out generation"),
    _r("/invocations", "POST", "inference",
       "SageMaker route: validates the body as a chat or a completion request and runs that handler"),
    _r("/generative_scoring", "POST", "inference", "scores candidate continuations with the model"),
    # Control: changes what the server does for everyone.
    _r("/inference/v1/abort_requests", "POST", "control", "aborts in-flight requests"),
    _r("/scale_elastic_ep", "POST", "control", "asks the server to rescale its data-parallel engines"),
    _r("/is_scaling_elastic_ep", "POST", "control", "whether a rescale is in progress"),
    # Utility: no generation, but the server works or tells something.
    _r("/v1/models", "GET", "utility", "the served model names"),
    _r("/tokenize", "POST", "utility", "runs the tokenizer (and the chat template) on a text"),
    _r("/detokenize", "POST", "utility", "turns token IDs back into text"),
    _r("/health", "GET", "utility", "200 while the engine runs (the probes' path)"),
    _r("/ping", "GET POST", "utility", "SageMaker's health check, the same answer as /health"),
    _r("/metrics", "GET", "utility", "Prometheus metrics"),
    _r("/load", "GET", "utility", "how many requests are being served"),
    _r("/version", "GET", "utility", "the vLLM version"),
    _r("/kv_event_sources", "GET", "utility", "where KV-cache events are published"),
    # Render: a request turned into tokens and back, without generating.
    _r("/v1/chat/completions/render", "POST", "render", "the prompt a chat request becomes"),
    _r("/v1/completions/render", "POST", "render", "the prompt a completion request becomes"),
    _r("/v1/messages/render", "POST", "render", "the prompt a messages request becomes"),
    _r("/v1/responses/render", "POST", "render", "the prompt a Responses request becomes"),
    _r("/v1/chat/completions/derender", "POST", "render", "token IDs back into a chat answer"),
    _r("/v1/completions/derender", "POST", "render", "token IDs back into a completion"),
    # FastAPI's own pages (off with --disable-fastapi-docs).
    _r("/openapi.json", "GET HEAD", "docs", "the OpenAPI description of every route"),
    _r("/docs", "GET HEAD", "docs", "Swagger UI"),
    _r("/docs/oauth2-redirect", "GET HEAD", "docs", "Swagger UI's OAuth helper"),
    _r("/redoc", "GET HEAD", "docs", "ReDoc"),
)


def guarded_routes() -> list[Route]:
    return [r for r in ROUTES if r.guarded]


def open_routes(kind: str | None = None) -> list[Route]:
    """The routes that answer without a key (of one kind, if given)."""
    return [r for r in ROUTES if not r.guarded and (kind is None or r.kind == kind)]


def bypasses() -> list[Route]:
    """Open routes that run the model: inference without the key."""
    return open_routes("inference")


def route(path: str) -> Route:
    """The table's entry for ``path`` (KeyError names the known paths)."""
    for r in ROUTES:
        if r.path == path:
            return r
    raise KeyError(f"{path} is not a route of vLLM 0.32 (known: {', '.join(r.path for r in ROUTES)})")


def table_rows() -> list[dict]:
    """The table as plain rows for a page or a notebook: kind, path, methods, key asked, what."""
    order = {k: i for i, k in enumerate(KINDS)}
    rows = sorted(ROUTES, key=lambda r: (order[r.kind], not r.guarded, r.path))
    return [{"kind": r.kind, "path": r.path, "methods": " ".join(r.methods),
             "key": "asked" if r.guarded else "NOT asked", "what": r.what} for r in rows]


def differences(installed_routes: dict[str, list[str]], installed_prefixes: list[str]) -> list[str]:
    """What differs between this table and an installed vLLM's app (empty: they agree).

    ``installed_routes`` maps each path to its methods, as ``vllm_app.describe_app`` reports them.
    """
    found = []
    if tuple(installed_prefixes) != GUARDED_PREFIXES:
        found.append(f"guarded prefixes: installed {tuple(installed_prefixes)}, table {GUARDED_PREFIXES}")
    table = {r.path: sorted(r.methods) for r in ROUTES}
    for path in sorted(set(installed_routes) - set(table)):
        found.append(f"{path} {installed_routes[path]}: registered by the installed vLLM, not in the table")
    for path in sorted(set(table) - set(installed_routes)):
        found.append(f"{path}: in the table, not registered by the installed vLLM")
    for path in sorted(set(table) & set(installed_routes)):
        if sorted(installed_routes[path]) != table[path]:
            found.append(f"{path}: methods {sorted(installed_routes[path])} installed, {table[path]} in the table")
    return found
