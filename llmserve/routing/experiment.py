"""Run the shared-prefix workload through a router with one policy, and measure what the engines saw.

Used by the routing chapter (book/routing.md, notebooks/routing-lab.ipynb) and its tests.
Layer: live (HTTP to a router and to each engine's ``/metrics``). The client is the serving
chapter's (:func:`llmserve.serving.client.stream_chat` on keep-alive connections opened
before the clock starts, timing TTFT the way vLLM's benchmark does); the ``/metrics``
reader is :func:`llmserve.serving.metrics.fetch_metrics`; the figures are
:mod:`llmserve.routing.stats`.

A run:

1. reads every engine's counters (prefix-cache queries and hits, finished requests);
2. sends the workload's rounds: in **burst** mode each round's requests start together, one
   thread per tenant released by a barrier, tenant ``k`` ``k × stagger_s`` after the first
   (so they arrive in tenant order, overlapping: the first round's answers are long enough);
   in **sequential** mode one request at a time, and then each request's engine is known
   (the engine whose finished-request counter moved);
3. reads the counters again: the increases are the run's own account.

Every run carries a ``cache_salt`` of its own (a vLLM request field, added to the first
block's hash): runs on the same engines share no cached blocks, so each starts cold
without restarting an engine. ``key_by_tenant`` adds the OpenAI ``user`` field, the key a
consistent-hash router routes by. Bounds: the workload's request count (at most 200), a
per-request timeout and a wall-clock budget after which no new round starts; loopback
targets only (the local fleet, or a port-forward to the cluster).

Where the workload goes: :func:`endpoints_of` a local :class:`~llmserve.routing.fleet.Fleet`,
or :func:`cluster_endpoints` (port-forwards to the router Service of
manifests/overlays/replicas-router and to each Ready vLLM Pod, whose ``/metrics`` the run reads).
"""
from __future__ import annotations

import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence
from urllib.parse import urlparse

from llmserve.core import http
from llmserve.core.errors import ClusterError, CourseError, require
from llmserve.core.names import system
from llmserve.core.objects import is_ready
from llmserve.routing import stats
from llmserve.routing.fleet import Fleet
from llmserve.routing.workload import CachePlan, Request, SharedPrefixWorkload, cache_plan
from llmserve.serving.client import Connection, list_models, stream_chat
from llmserve.serving.metrics import fetch_metrics
from llmserve.world import portforward

#: The router's Service in the cluster (manifests/components/router/router-service.yaml).
ROUTER_SERVICE = "vllm-router"
#: The policies the lab compares, in the order the chapter discusses them.
DEFAULT_POLICIES = ("round_robin", "cache_aware", "consistent_hash")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Endpoints:
    """Where the workload goes (a router's OpenAI base URL) and where each engine's counters are read."""

    base_url: str
    model: str
    engine_urls: tuple[str, ...]
    api_key: str | None = None

    def __post_init__(self) -> None:
        for url in (self.base_url, *self.engine_urls):
            require(urlparse(url).hostname in LOOPBACK, f"The lab only sends its workload to loopback, not {url}.",
                    "Use the local fleet, or a port-forward to the cluster (http://127.0.0.1:…).")


def endpoints_of(fleet: Fleet) -> Endpoints:
    """The local fleet's router and engines (read again after a router restart: the port changes)."""
    return Endpoints(fleet.base_url, fleet.model, tuple(fleet.engine_urls))


def by_hand_forwards() -> list[str]:
    """The kubectl commands that give the same view as :func:`cluster_endpoints`."""
    n = system()
    return [f"kubectl -n {n.namespace} port-forward service/{ROUTER_SERVICE} 8000:8000",
            f"kubectl -n {n.namespace} get pods -l app.kubernetes.io/name={n.deployment} -o wide",
            f"kubectl -n {n.namespace} port-forward pod/<each vLLM Pod> 9001:{n.container_port}   # its /metrics"]


@contextmanager
def cluster_endpoints(cluster, api_key: str | None) -> Iterator[Endpoints]:
    """Port-forwards to the router Service and to every Ready vLLM Pod (for their /metrics).

    The router overlay (manifests/overlays/replicas-router) must be applied: without the
    router Service this says so, with the fix.
    """
    n = system()
    pods = [p for p in cluster.list("v1", "Pod", n.namespace, label_selector=f"app.kubernetes.io/name={n.deployment}")
            if is_ready(p)]
    if not pods:
        raise ClusterError(f"No Ready vLLM Pod in {n.namespace}.",
                           "Apply manifests/overlays/replicas-router and wait for the rollout "
                           "(the Deployment chapter's lab shows why a Pod is not Ready).")
    with ExitStack() as stack:
        router = stack.enter_context(portforward.forward(cluster, f"service/{ROUTER_SERVICE}", remote_port="http",
                                                         namespace=n.namespace))
        engines = tuple(stack.enter_context(portforward.forward(cluster, f"pod/{p['metadata']['name']}",
                                                                remote_port=n.container_port, namespace=n.namespace))
                        for p in pods)
        base = f"{router}/v1"
        yield Endpoints(base, list_models(base, api_key)[0], engines, api_key)


def _counters(endpoints: Endpoints) -> dict[str, dict]:
    return {url: fetch_metrics(url).samples for url in endpoints.engine_urls}


def measure_tokens(endpoints: Endpoints, workload: SharedPrefixWorkload) -> tuple[int, int]:
    """``(prefix tokens, prompt tokens)`` of tenant 0's first request, from an engine's ``POST /tokenize``.

    The prefix is the system message in the chat template (what every request of a tenant shares).
    """
    req = workload.request(0, 0)

    def count(messages: list, add_generation_prompt: bool) -> int:
        body = {"model": endpoints.model, "messages": messages, "add_generation_prompt": add_generation_prompt}
        answer = http.request(endpoints.engine_urls[0], "/tokenize", method="POST", body=body,
                              api_key=endpoints.api_key, timeout=30).json or {}
        return int(answer.get("count") or len(answer.get("tokens") or []))

    return count(req.messages[:1], False), count(req.messages, True)


def plan_for(endpoints: Endpoints, workload: SharedPrefixWorkload, block_size: int, kv_cache_blocks: int) -> CachePlan:
    """The workload's block arithmetic on these engines (token counts measured, not guessed)."""
    prefix, prompt = measure_tokens(endpoints, workload)
    return cache_plan(workload, prefix, prompt, block_size, kv_cache_blocks, len(endpoints.engine_urls))


class _Sender:
    """Sends requests of one run and records what came back (one keep-alive connection per tenant)."""

    def __init__(self, endpoints: Endpoints, salt: str, key_by_tenant: bool, timeout_s: float) -> None:
        self.endpoints, self.salt, self.key_by_tenant, self.timeout_s = endpoints, salt, key_by_tenant, timeout_s
        self.records: list[dict] = []
        self._lock = threading.Lock()
        self._conns: dict[int, Connection] = {}

    def connection(self, tenant: int) -> Connection:
        if tenant not in self._conns:
            self._conns[tenant] = Connection(self.endpoints.base_url, self.timeout_s).open()
        return self._conns[tenant]

    def send(self, req: Request, barrier: threading.Barrier | None = None, delay_s: float = 0.0, **extra) -> dict:
        body = {"cache_salt": self.salt}
        if self.key_by_tenant:
            body["user"] = req.user
        conn = self.connection(req.tenant)
        rec = {"round": req.round, "tenant": req.tenant, **extra}
        if barrier is not None:
            barrier.wait(timeout=self.timeout_s)
        if delay_s:
            time.sleep(delay_s)
        try:
            r = stream_chat(self.endpoints.base_url, self.endpoints.model, req.messages, self.endpoints.api_key,
                            max_tokens=req.max_tokens, ignore_eos=True, timeout_s=self.timeout_s,
                            extra_body=body, connection=conn)
            rec.update(ttft_s=r.ttft_s, latency_s=r.latency_s, output_tokens=r.completion_tokens,
                       prompt_tokens=r.prompt_tokens, error=None)
        except CourseError as err:
            rec.update(ttft_s=None, latency_s=None, output_tokens=0, prompt_tokens=0, error=err.what)
        with self._lock:
            self.records.append(rec)
        return rec

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()


def _served_by(before: dict[str, dict], after: dict[str, dict]) -> str | None:
    moved = [u for u in after if stats.engine_delta(u, before[u], after[u]).requests > 0]
    return moved[0] if len(moved) == 1 else None


def run(endpoints: Endpoints, workload: SharedPrefixWorkload, *, label: str, policy: str,
        salt: str | None = None, sequential: bool = False, key_by_tenant: bool = False,
        rounds: Sequence[int] | None = None, stagger_s: float = 0.05, request_timeout_s: float = 60,
        max_duration_s: float = 180, progress: Progress | None = None) -> stats.RunSummary:
    """Send ``rounds`` (default: all of the workload's) through ``endpoints`` and measure them.

    ``policy`` only labels the result (the router already runs it). ``salt`` (default: a fresh
    one) isolates this run's cache entries from every other run's; pass the same salt to
    continue where an earlier run left the caches. Returns a :class:`stats.RunSummary` whose
    ``records`` carry each request's ``round``, ``tenant``, ``ttft_s``, ``latency_s``,
    ``output_tokens``, ``prompt_tokens``, ``error`` and, when sequential, ``engine``.
    """
    chosen = list(range(workload.rounds) if rounds is None else rounds)
    require(all(isinstance(r, int) and r >= 0 for r in chosen) and len(chosen) * workload.tenants <= 200,
            f"rounds must be whole numbers ≥ 0, at most {200 // workload.tenants} of them.",
            "Pass e.g. range(6).")
    sender = _Sender(endpoints, salt or f"{label}-{uuid.uuid4().hex[:8]}", key_by_tenant, request_timeout_s)
    before = _counters(endpoints)
    t0 = time.perf_counter()
    try:
        for i, r in enumerate(chosen):
            if time.perf_counter() - t0 > max_duration_s:
                break
            burst = [workload.request(t, r) for t in range(workload.tenants)]
            if sequential:
                for req in burst:
                    ahead = _counters(endpoints)
                    rec = sender.send(req)
                    rec["engine"] = _served_by(ahead, _counters(endpoints))
            else:
                barrier = threading.Barrier(len(burst))
                threads = [threading.Thread(target=sender.send, args=(req, barrier, req.tenant * stagger_s),
                                            name=f"tenant-{req.tenant}") for req in burst]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
            if progress:
                progress(f"{label}: round {i + 1}/{len(chosen)} done")
    finally:
        sender.close()
    wall = time.perf_counter() - t0
    after = _counters(endpoints)
    deltas = [stats.engine_delta(u, before[u], after[u]) for u in endpoints.engine_urls]
    records = sorted(sender.records, key=lambda x: (x["round"], x["tenant"]))
    return stats.summarise(label, policy, deltas, records, wall)


def compare_policies(fleet: Fleet, workload: SharedPrefixWorkload, policies: Sequence[str] = DEFAULT_POLICIES,
                     progress: Progress | None = None, **run_args) -> list[stats.RunSummary]:
    """The same workload under each policy: a fresh router per policy, a fresh cache salt per run.

    The consistent-hash run keys requests by tenant (the ``user`` field), as its users would.
    """
    out = []
    for policy in policies:
        fleet.restart_router(policy)
        out.append(run(endpoints_of(fleet), workload, label=policy, policy=policy,
                       key_by_tenant=policy == "consistent_hash", progress=progress, **run_args))
    return out


def restart_demo(fleet: Fleet, workload: SharedPrefixWorkload, later_rounds: int = 3,
                 progress: Progress | None = None) -> dict[str, stats.RunSummary]:
    """The failure mode of a router restart, measured (cache-aware routing).

    1. ``learn``: the workload's rounds in bursts through a fresh cache-aware router — it
       places each tenant and the engines cache the prompts where it placed them;
    2. ``kept``: ``later_rounds`` more rounds, one request at a time, same router, same salt;
    3. ``restarted``: the router is restarted (its tree is gone), and the same number of
       further rounds arrive one at a time, same salt: the engines still hold every prompt,
       but the router no longer knows where.
    """
    fleet.restart_router("cache_aware")
    salt = f"restart-{uuid.uuid4().hex[:8]}"
    learn = run(endpoints_of(fleet), workload, label="learn", policy="cache_aware", salt=salt, progress=progress)
    kept_rounds = range(workload.rounds, workload.rounds + later_rounds)
    kept = run(endpoints_of(fleet), workload, label="kept", policy="cache_aware", salt=salt, sequential=True,
               rounds=kept_rounds, progress=progress)
    fleet.restart_router("cache_aware")
    restarted = run(endpoints_of(fleet), workload, label="restarted", policy="cache_aware", salt=salt,
                    sequential=True, rounds=range(kept_rounds.stop, kept_rounds.stop + later_rounds),
                    progress=progress)
    return {"learn": learn, "kept": kept, "restarted": restarted}
