"""Pure readers of a Service's EndpointSlices (``discovery.k8s.io/v1``): which Pods are behind it.

Used by the Service chapter (what the Service sends traffic to) and by the port-forward
(:mod:`llmserve.world.portforward` picks a Ready Pod from them, as ``kubectl port-forward
service/…`` does).
"""
from __future__ import annotations

from dataclasses import dataclass

from llmserve.core.errors import ClusterError, InputError
from llmserve.core.names import system

#: The label the EndpointSlice controller puts on every slice of a Service.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of an EndpointSlice, with the Pod behind it."""

    pod: str | None
    namespace: str | None
    addresses: tuple[str, ...]
    ready: bool
    serving: bool
    terminating: bool
    node: str | None
    ports: dict  # port name ("" if unnamed) -> Pod port number

    def __str__(self) -> str:
        state = "ready" if self.ready else ("terminating" if self.terminating else "NOT ready")
        ports = ", ".join(f"{k or '(unnamed)'}={v}" for k, v in self.ports.items()) or "no ports"
        return f"Pod {self.pod or '?'} {'/'.join(self.addresses)} on {self.node or '?'}: {state} ({ports})"


def endpoints(slices: list[dict]) -> list[Endpoint]:
    """Every endpoint of a Service's EndpointSlices, as :class:`Endpoint`.

    Conditions follow the EndpointSlice API: ``ready`` unset means ready
    ("in most cases consumers should interpret this unknown state as ready"),
    ``serving`` unset defers to ``ready``, ``terminating`` unset means not
    terminating (Kubernetes API reference, EndpointConditions).
    """
    out = []
    for s in slices:
        ports = {(p.get("name") or ""): p.get("port") for p in (s.get("ports") or []) if p.get("port")}
        for e in s.get("endpoints") or []:
            cond = e.get("conditions") or {}
            ready = cond.get("ready") is not False
            ref = e.get("targetRef") or {}
            out.append(Endpoint(
                pod=ref.get("name") if ref.get("kind", "Pod") == "Pod" else None,
                namespace=ref.get("namespace") or (s.get("metadata") or {}).get("namespace"),
                addresses=tuple(e.get("addresses") or ()),
                ready=ready,
                serving=cond.get("serving", ready) is not False,
                terminating=bool(cond.get("terminating")),
                node=e.get("nodeName"),
                ports=ports,
            ))
    return out


def describe_endpoints(slices: list[dict]) -> str:
    """One line per endpoint, for a notebook cell."""
    eps = endpoints(slices)
    if not slices:
        return "no EndpointSlices: the Service has no selector, or it does not exist yet"
    if not eps:
        return f"{len(slices)} EndpointSlice(s) with no endpoints: the selector matches no Pod"
    return "\n".join(str(e) for e in eps)


def choose_endpoint(slices: list[dict], service: str | None = None, port: int | str | None = None) -> tuple[Endpoint, int]:
    """A Ready Pod of the Service and the Pod port to forward to.

    ``port`` is a Service port *name* (looked up in the slices' ports, which
    hold the resolved Pod port number), or a number (taken as the Pod port),
    or None (the slices' only port). Raises :class:`ClusterError` with the fix
    when no Pod is Ready or the port is unknown.
    """
    service = service or system().service
    eps = endpoints(slices)
    if not slices or not eps:
        raise ClusterError(
            f"Service {service} has no endpoints: {describe_endpoints(slices)}.",
            "Check the Service's selector against the Pod labels (the Service chapter's checker, llmserve.service.rules.selector_report) and that "
            f"the Deployment has a Pod: `kubectl get pods -n {system().namespace} -l {_pod_selector()}`.")
    ready = [e for e in eps if e.ready and e.pod]
    if not ready:
        states = "; ".join(str(e) for e in eps)
        raise ClusterError(
            f"Service {service} has {len(eps)} endpoint(s) but none is Ready ({states}). The Pod is not Ready "
            "yet: vLLM answers /health only once the weights are loaded, which takes minutes.",
            "Wait, or see the Deployment chapter's diagnosis (deployment-lab): `kubectl describe pod` and the "
            "Pod's logs say whether it is still loading, crash-looping or failing its probe.")
    chosen = sorted(ready, key=lambda e: e.pod)[0]
    if port is None or isinstance(port, str) and not port.isdigit():
        ports = chosen.ports
        if port is None:
            if len(ports) != 1:
                raise InputError(f"Service {service} has {len(ports)} ports ({', '.join(ports) or 'none'}).",
                                 "Say which one: remote_port='http' or a number.")
            return chosen, next(iter(ports.values()))
        if port not in ports:
            raise ClusterError(
                f"Service {service} has no port named {port!r} on its endpoints (it has: "
                f"{', '.join(k or '(unnamed)' for k in ports) or 'none'}).",
                "Use one of those names, or check the Service's targetPort against the container's ports "
                "(the Service chapter's checker, llmserve.service.rules.selector_report).")
        return chosen, ports[port]
    return chosen, int(port)




def _pod_selector() -> str:
    from llmserve.core.objects import selector_of
    from llmserve.core.names import base_objects
    dep = next(o for o in base_objects() if o.get("kind") == "Deployment")
    return selector_of(dep)
