"""Reach the vLLM Service from the notebook: a port-forward, and plain HTTP checks.

Used by the Service chapter (``notebooks/service-lab.ipynb``) and by every lab
that talks to the server in the cluster (``mode.detect_server`` → ``cluster``).

A ClusterIP has no route from your laptop. ``kubectl port-forward`` tunnels
through the API server to **one Pod**; this module does the same with the
kubernetes Python client (:func:`kubernetes.stream.portforward`, no kubectl):

* :func:`choose_endpoint` reads the Service's EndpointSlices
  (``discovery.k8s.io/v1``) and picks a **Ready** Pod: the same list the
  Service itself sends traffic to;
* :class:`LocalForwarder` listens on ``127.0.0.1:<free port>`` and, for each
  connection accepted there, opens a new port-forward stream to the Pod and
  pumps bytes both ways in a small thread (the Python client gives one socket
  per stream, not a local port);
* :func:`forward` is the context manager the notebooks use::

      with portforward.forward(cluster, "service/vllm-qwen25-coder-7b") as url:
          print(http_get(url, "/health"))

Like kubectl, it talks to one Pod chosen when it starts, so it bypasses the
Service's load balancing, and it stops working when that Pod goes away.

:func:`http_get` makes one GET (``/health``, ``/v1/models``) and turns every
failure into a :class:`~llmserve.core.errors.ServerError` that names the fix.
"""
from __future__ import annotations

import select
import socket
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from llmserve.core.endpoints import SERVICE_NAME_LABEL, choose_endpoint, describe_endpoints, endpoints
from llmserve.core.errors import ClusterError, InputError
from llmserve.core.names import system
from llmserve.core.waiting import wait_until

_CHUNK = 64 * 1024


# -- the local listener and the byte pump ----------------------------------------------
def pump(a, b, stop: threading.Event, poll_s: float = 0.2) -> None:
    """Copy bytes both ways between two connected sockets until one side closes.

    Works with any objects that have ``fileno``, ``recv``, ``sendall`` and
    ``close`` (a TCP socket, a socketpair end, the Python client's
    port-forward socket). When either side closes, both are closed: HTTP
    clients never half-close, and a port-forward stream cannot be half-closed.
    """
    try:
        for s in (a, b):
            s.setblocking(True)
        while not stop.is_set():
            readable, _, _ = select.select([a, b], [], [], poll_s)
            for src in readable:
                dst = b if src is a else a
                data = src.recv(_CHUNK)
                if not data:
                    return
                dst.sendall(data)
    except (OSError, ValueError):
        return  # a side was closed under us (stop, reset): nothing left to copy
    finally:
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass


class LocalForwarder:
    """Listen on 127.0.0.1:<free port>; connect each accepted socket to ``open_remote()``.

    ``open_remote`` returns a new connected socket-like object per connection
    (a port-forward stream in real use, anything in tests). If it raises, the
    accepted connection is closed and the error is kept in :attr:`errors`.
    """

    def __init__(self, open_remote: Callable[[], object], host: str = "127.0.0.1", port: int = 0) -> None:
        self.open_remote = open_remote
        self.errors: list[BaseException] = []
        self.connections = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
        except OSError as exc:
            self._listener.close()
            raise InputError(f"Cannot listen on {host}:{port}: {exc.strerror}.",
                             "Leave the local port at 0 (any free port) or pick another one.") from None
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.host, self.port = self._listener.getsockname()[:2]
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"forward :{self.port}", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # listener closed
            try:
                remote = self.open_remote()
            except BaseException as exc:  # noqa: BLE001 - kept and reported, the client sees a closed socket
                self.errors.append(exc)
                conn.close()
                continue
            self.connections += 1
            t = threading.Thread(target=pump, args=(conn, remote, self._stop), daemon=True,
                                 name=f"pump :{self.port} #{self.connections}")
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()

    def close(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self._acceptor.join(timeout_s)
        for t in self._threads:
            t.join(timeout_s)

    def __enter__(self) -> "LocalForwarder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- the Kubernetes side ---------------------------------------------------------
class LocalURL(str):
    """The local URL (a plain ``str``), also saying which Pod and port it reaches."""

    pod: str
    remote_port: int
    forwarder: LocalForwarder

    def __new__(cls, url: str, pod: str, remote_port: int, forwarder: LocalForwarder) -> "LocalURL":
        obj = super().__new__(cls, url)
        obj.pod, obj.remote_port, obj.forwarder = pod, remote_port, forwarder
        return obj


def parse_target(target) -> tuple[str, str]:
    """``"service/x"``, ``"svc/x"``, ``"pod/x"``, ``"x"`` (a Service), a manifest or an ObjectRef → ``(kind, name)``."""
    if hasattr(target, "kind") and hasattr(target, "name"):  # llmserve.world.cluster.ObjectRef
        target = {"kind": target.kind, "metadata": {"name": target.name}}
    if isinstance(target, dict):
        kind = target.get("kind")
        name = (target.get("metadata") or {}).get("name")
        if kind not in ("Service", "Pod") or not name:
            raise InputError(f"Cannot port-forward to a {kind or 'dict'}.", "Pass a Service or Pod manifest, or 'service/NAME'.")
        return kind, name
    kind, sep, name = str(target).partition("/")
    if not sep:
        return "Service", kind
    kinds = {"service": "Service", "svc": "Service", "services": "Service", "pod": "Pod", "pods": "Pod", "po": "Pod"}
    if kind.lower() not in kinds or not name:
        raise InputError(f"{target!r} is not service/NAME or pod/NAME.", "Write e.g. 'service/vllm-qwen25-coder-7b'.")
    return kinds[kind.lower()], name


def _kubernetes_opener(cluster, pod: str, namespace: str, port: int) -> Callable[[], object]:
    """A function opening one port-forward stream to ``pod:port`` through the API server."""
    from kubernetes import client
    from kubernetes.stream import portforward as k8s_portforward

    core = client.CoreV1Api(cluster.api_client)

    def open_remote():
        pf = k8s_portforward(core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port))
        return pf.socket(port)

    return open_remote


def _explain_stream_error(exc: BaseException, pod: str, namespace: str, port: int, host: str) -> ClusterError:
    from llmserve.world.cluster import explain
    text = str(getattr(exc, "reason", "") or exc)
    if "403" in text or "forbidden" in text.lower():
        return ClusterError(f"Forbidden: you may not port-forward to pod {namespace}/{pod} ({text}).",
                            "Port-forwarding needs the `create` verb on pods/portforward: check with "
                            f"`kubectl auth can-i create pods/portforward -n {namespace}` and ask for a Role that grants it.")
    if "404" in text or "not found" in text.lower():
        return ClusterError(f"Pod {namespace}/{pod} was not found when opening the port-forward ({text}).",
                            "The Pod was replaced (a rollout, a restart): leave the `with` block and enter it again.")
    if getattr(exc, "status", None) not in (None, 0):
        return explain(exc, f"port-forward to {namespace}/{pod}:{port}", host)
    return ClusterError(f"Could not open a port-forward stream to {namespace}/{pod}:{port} through {host}: {text}",
                        f"Check that the cluster answers (`kubectl get pods -n {namespace}`) and that nothing between "
                        "you and the API server blocks WebSocket upgrades (some proxies do).")


def service_slices(cluster, service: str | None = None, namespace: str | None = None) -> list[dict]:
    """The EndpointSlices of one Service (``discovery.k8s.io/v1``, by the service-name label)."""
    service, namespace = service or system().service, namespace or system().namespace
    return cluster.list("discovery.k8s.io/v1", "EndpointSlice", namespace=namespace,
                        label_selector=f"{SERVICE_NAME_LABEL}={service}")


def wait_for_ready_endpoint(cluster, service: str | None = None, namespace: str | None = None,
                            timeout_s: float = 600.0, interval_s: float = 5.0,
                            progress: Callable[[float, str], None] | None = None,
                            clock: Callable[[], float] | None = None,
                            sleep: Callable[[float], None] | None = None) -> list[dict]:
    """Poll the Service's EndpointSlices until one endpoint is Ready; return the slices.

    ``progress(elapsed_s, status)`` is called after every poll (status: the
    endpoints in one line). Raises :class:`ClusterError` after ``timeout_s``
    with the last status and the fix.
    """
    service, namespace = service or system().service, namespace or system().namespace
    seen: dict = {}

    def look():
        slices = service_slices(cluster, service, namespace)
        eps = endpoints(slices)
        seen["slices"] = slices
        status = "; ".join(str(e) for e in eps) if eps else describe_endpoints(slices)
        return any(e.ready and e.pod for e in eps), status

    def timed_out(status: str, elapsed: float) -> ClusterError:
        return ClusterError(
            f"Service {namespace}/{service} had no Ready endpoint after {timeout_s:.0f} s (last: {status}).",
            "If an endpoint is listed NOT ready, the Pod is still loading or failing its readiness probe: see "
            "the Deployment chapter's diagnosis. If none is listed, check the selector "
            "(the Service chapter's selector checker) and that the Deployment has a Pod.")

    wait_until(look, timeout_s=timeout_s, interval_s=interval_s, progress=progress, on_timeout=timed_out,
               clock=clock, sleep=sleep)
    return seen["slices"]


@contextmanager
def forward(cluster, target: str | dict | None = None, remote_port: int | str | None = None,
            namespace: str | None = None, local_port: int = 0,
            opener: Callable[[str, str, int], Callable[[], object]] | None = None) -> Iterator[LocalURL]:
    """Forward ``127.0.0.1:<free port>`` to a Ready Pod of a Service (or to a named Pod).

    ``cluster`` is an :class:`llmserve.world.cluster.Cluster` (anything with
    ``list``, ``get``, ``api_client`` and ``host``). ``remote_port`` is a
    Service port name (``"http"``), a Pod port number, or None (the Service's
    only port; required for a Pod). ``target`` may also be a manifest or an
    :class:`~llmserve.world.cluster.ObjectRef`, whose namespace then wins. Yields the local URL (a ``str`` with
    ``.pod`` and ``.remote_port``). ``opener(pod, namespace, port)`` replaces
    the kubernetes client's stream in tests.
    """
    kind, name = parse_target(target or f"service/{system().service}")
    given_ns = getattr(target, "namespace", None) or (
        (target.get("metadata") or {}).get("namespace") if isinstance(target, dict) else None)
    namespace = given_ns or namespace or system().namespace
    if kind == "Service":
        if cluster.get(_service_ref(name, namespace)) is None:
            raise ClusterError(f"There is no Service {namespace}/{name}.",
                               "Apply it first: manifests/base/vllm-service.yaml (the lab's apply cell).")
        slices = service_slices(cluster, name, namespace)
        endpoint, port = choose_endpoint(slices, name, remote_port)
        pod = endpoint.pod
    else:
        if remote_port is None or isinstance(remote_port, str) and not remote_port.isdigit():
            raise InputError("Forwarding to a Pod needs the Pod port as a number.", "Pass remote_port=8000.")
        pod, port = name, int(remote_port)
    make = opener or (lambda p, ns, n: _kubernetes_opener(cluster, p, ns, n))
    open_stream = make(pod, namespace, port)
    host = getattr(cluster, "host", "the API server")

    def open_remote():
        try:
            return open_stream()
        except ClusterError:
            raise
        except Exception as exc:  # noqa: BLE001 - explained
            raise _explain_stream_error(exc, pod, namespace, port, host) from None

    # Open (and drop) one stream now, so a refusal shows here, not as a dead socket later.
    first = open_remote()
    first.close()
    fwd = LocalForwarder(open_remote, port=local_port)
    try:
        yield LocalURL(fwd.url, pod, port, fwd)
    finally:
        fwd.close()


def _service_ref(name: str, namespace: str):
    from llmserve.world.cluster import ObjectRef
    return ObjectRef("v1", "Service", name, namespace)
