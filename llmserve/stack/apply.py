"""The capstone's cluster actions: apply the stack in order, wait until vLLM is ready, reach it, clean up.

Used by notebooks/stack-lab.ipynb (each call beside the ``kubectl`` commands of
:func:`llmserve.stack.order.by_hand`) and book/stack.md. Layer: live. Every wait goes
through :func:`llmserve.core.waiting.wait_until`; why a Pod is not ready is the
Deployment chapter's diagnosis (:func:`llmserve.deployment.live.diagnose`), and a hopeless
one names the troubleshooting chapter's entries that match.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Iterable

from llmserve.core.errors import ClusterError, require
from llmserve.core.http import api_key_from_env
from llmserve.core.names import system
from llmserve.core.waiting import wait_until
from llmserve.deployment.live import diagnose
from llmserve.stack.order import (KEEP_ON_CLEANUP, PLACEHOLDER_KEY, apply_order, choose_overlay, resolve_api_key,
                                  rollout_status, secret_value, with_api_key)
from llmserve.troubleshooting.catalogue import advice, match
from llmserve.world import portforward
from llmserve.world.cluster import Cluster, ObjectRef
from llmserve.world.mode import Mode


@dataclass
class Applied:
    """What :func:`apply_stack` did."""

    refs: list = field(default_factory=list)
    api_key: str = ""
    key_source: str = ""
    lines: list = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(self.lines)


class NotReady(ClusterError):
    """vLLM did not become ready: the status, the fix, and the matching troubleshooting entries."""


def cluster_for(mode: Mode) -> Cluster | None:
    """A :class:`~llmserve.world.cluster.Cluster` when the mode is live, else None."""
    return Cluster(mode.context) if mode.live else None


def pick_overlay(cluster=None) -> tuple[str, str]:
    """:func:`~llmserve.stack.order.choose_overlay` with ``$COURSE_OVERLAY`` and, live, the cluster's nodes."""
    nodes = cluster.list("v1", "Node") if cluster is not None else None
    return choose_overlay(os.environ.get("COURSE_OVERLAY") or None, nodes)


def _secret_ref() -> ObjectRef:
    n = system()
    return ObjectRef("v1", "Secret", n.api_key_secret, n.namespace)


def _deployment_ref() -> ObjectRef:
    n = system()
    return ObjectRef("apps/v1", "Deployment", n.deployment, n.namespace)


def apply_stack(cluster, objects: Iterable[dict], api_key: str | None = None,
                progress: Callable[[str], None] | None = print) -> Applied:
    """Server-side apply the stack in :func:`~llmserve.stack.order.apply_order`, with a real API key.

    ``api_key`` defaults to :func:`~llmserve.stack.order.resolve_api_key` (``$VLLM_API_KEY``, the
    key already in the cluster, or a new random one). Idempotent: re-running changes nothing
    that is already as declared.
    """
    objs = apply_order(objects)
    if api_key is None:
        api_key, source = resolve_api_key(api_key_from_env(), cluster.get(_secret_ref()))
    else:
        source = "given"
    objs = with_api_key(objs, api_key)
    result = Applied(api_key=api_key, key_source=source)
    for i, obj in enumerate(objs, 1):
        ref = cluster.apply(obj)[0]
        result.refs.append(ref)
        line = f"[{i}/{len(objs)}] applied {ref}" + (f" (API key: {source})" if obj["kind"] == "Secret" else "")
        result.lines.append(line)
        if progress:
            progress(line)
    return result


def _not_ready(what: str, fix: str, evidence: str) -> NotReady:
    hint = advice(evidence) if match(evidence) else None
    return NotReady(what, fix + (f"\nTroubleshooting entries that match:\n{hint}" if hint else ""))


def wait_until_ready(cluster, timeout_s: float = 900.0, interval_s: float = 5.0,
                     progress: Callable[[float, str], None] | None = None, give_up_after_s: float = 30.0,
                     clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None
                     ) -> dict:
    """Wait until the vLLM Deployment is available, showing why not at every poll; return it.

    Each poll reads the Deployment and its Pods (:func:`~llmserve.stack.order.rollout_status`)
    and, for a Pod that is not ready, the Deployment chapter's diagnosis. It stops early when
    that diagnosis has said "stuck" or "failing" for ``give_up_after_s`` (waiting longer
    would not help), and after ``timeout_s``. Either way :class:`NotReady` names the status,
    the fix and, when the troubleshooting chapter knows the symptom, the entries to read.
    """
    ref = _deployment_ref()
    seen: dict = {"deployment": None}

    def look():
        dep = cluster.get(ref)
        pods = cluster.pods_of(dep) if dep else []
        done, status = rollout_status(dep, pods)
        found = None if done or not pods else diagnose(cluster, dep)
        if found is not None and found.hopeless:
            status += f" — {found.state.upper()}: {found.reason}"
        seen["deployment"] = dep
        return done, (status, found)

    def show(elapsed: float, state) -> None:
        (progress or (lambda t, s: print(f"[{t:5.0f} s] {s}")))(elapsed, state[0])

    waited = wait_until(look, timeout_s=timeout_s, interval_s=interval_s, progress=show,
                        give_up=lambda state: state[1] is not None and state[1].hopeless,
                        give_up_after_s=give_up_after_s, clock=clock, sleep=sleep)
    if waited.done:
        return seen["deployment"]
    status, found = waited.status
    if found is not None and found.hopeless:
        raise _not_ready(f"vLLM is not coming up: {found.reason} ({status})", found.fix,
                         status + " " + " ".join(found.evidence))
    events = "; ".join(f"{e.get('reason')}: {e.get('message')}" for e in cluster.events(ref)[-3:])
    evidence = " ".join([status, events] + (found.evidence if found else []))
    raise _not_ready(f"{ref} was not ready after {timeout_s:.0f} s (last status: {status}). "
                     f"Recent events: {events or 'none'}",
                     (f"{found.reason} {found.fix}" if found else
                      "See the troubleshooting chapter for this status, or `kubectl describe` the Deployment."),
                     evidence)


def read_api_key(cluster=None) -> str:
    """The key a client must send: ``$VLLM_API_KEY``, else the cluster's Secret (never the placeholder)."""
    env = (api_key_from_env() or "").strip()
    if env:
        return env
    n = system()
    require(cluster is not None, "$VLLM_API_KEY is not set and there is no cluster to read the Secret from.",
            "export VLLM_API_KEY=… (the key the server was started with), or pass the Cluster.")
    value = secret_value(cluster.get(_secret_ref()))
    if not value or value == PLACEHOLDER_KEY:
        raise ClusterError(f"The Secret {n.namespace}/{n.api_key_secret} is missing or still holds the placeholder.",
                           "Apply the stack with llmserve.stack.apply.apply_stack(), which puts a real key in it, "
                           "or create the Secret by hand from a generated key (llmserve.stack.order.by_hand).")
    return value


def open_endpoint(cluster, local_port: int = 0):
    """A port-forward to a Ready Pod of the vLLM Service: a context manager yielding the local base URL
    (``http://127.0.0.1:<port>``; append ``/v1`` for the OpenAI API)."""
    n = system()
    return portforward.forward(cluster, f"service/{n.service}", remote_port=n.port_name or n.service_port,
                               namespace=n.namespace, local_port=local_port)


def cleanup(cluster, objects: Iterable[dict] | None = None, dry_run: bool = False,
            keep_kinds: Iterable[str] = tuple(KEEP_ON_CLEANUP)) -> list[str]:
    """Delete the running parts (Deployment, Service, Secret), never the model data.

    Only objects that carry the course's label are deleted (:meth:`Cluster.cleanup`).
    ``objects`` (the rendered stack) lets a fresh kernel clean up what an
    earlier one applied. The hostPath directory is never touched: Kubernetes
    does not delete hostPath data, and the PV is kept.
    """
    for obj in apply_order(objects or []):
        ref = ObjectRef.of(obj)
        if ref not in cluster.applied:
            cluster.applied.append(ref)
    return cluster.cleanup(keep_kinds=tuple(keep_kinds), dry_run=dry_run)
