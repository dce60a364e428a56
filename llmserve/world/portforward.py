"""Reach the vLLM Service from the notebook: a port-forward through the API server (Live).

Used by the Service chapter (``notebooks/service-lab.ipynb``) and by every lab
that talks to the server in the cluster (``mode.detect_server`` → ``cluster``).

A ClusterIP has no route from your laptop. ``kubectl port-forward`` tunnels
through the API server to **one Pod**; this module does the same with the
kubernetes Python client (:func:`kubernetes.stream.portforward`, no kubectl):

* :func:`service_slices` reads the Service's EndpointSlices
  (``discovery.k8s.io/v1``) and :func:`~llmserve.core.endpoints.choose_endpoint`
  picks a **Ready** Pod: the same list the Service itself sends traffic to;
* :class:`LocalForwarder` listens on ``127.0.0.1:<free port>`` and, for each
  connection accepted there, opens a new port-forward stream to the Pod and
  pumps bytes both ways in a small thread (the Python client gives one socket
  per stream, not a local port);
* :func:`forward` is the context manager the notebooks use::

      with portforward.forward(cluster, "service/vllm-qwen25-coder-7b") as url:
          print(http.get(url, "/health"))

Like kubectl, it talks to one Pod chosen when it starts, so it bypasses the
Service's load balancing, and it stops working when that Pod goes away.

Failures keep the cluster's own words. A refused upgrade (403 from RBAC, 404 when
the Pod is gone) shows the API server's message; when the kubelet cannot reach
the port in the Pod it writes ``error forwarding port …`` on the stream's error
channel (pkg/kubelet/cri/streaming/portforward/websocket.go): :func:`forward`
shows that text and the fix, at the start when the first stream already fails,
or when a request inside the ``with`` block fails because of it.
"""
from __future__ import annotations

import json
import re
import select
import socket
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from llmserve.core.endpoints import SERVICE_NAME_LABEL, choose_endpoint, describe_endpoints, endpoints
from llmserve.core.errors import ClusterError, CourseError, InputError
from llmserve.core.names import system
from llmserve.core.waiting import wait_until
from llmserve.world.cluster import ObjectRef, explain

_CHUNK = 64 * 1024
PROBE_WAIT_S = 0.5        # how long the first stream waits for the kubelet's error before it counts as open
STALL_TIMEOUT_S = 30.0    # a send that cannot proceed this long ends the connection (no pump hangs)


# -- the local listener and the byte pump ----------------------------------------------
def pump(a, b, stop: threading.Event, poll_s: float = 0.2, stall_s: float = STALL_TIMEOUT_S,
         on_end: Callable[[], None] | None = None) -> None:
    """Copy bytes both ways between two connected sockets until one side closes, then close both.

    Works with any objects that have ``fileno``, ``recv``, ``sendall``,
    ``settimeout`` and ``close`` (a TCP socket, a socketpair end, the Python
    client's port-forward socket). ``on_end()`` is called when the copy ends,
    before both are closed: HTTP clients never half-close, and a port-forward
    stream cannot be half-closed. Every wait is bounded: ``select`` wakes every
    ``poll_s`` to check ``stop``, and a send stalled for ``stall_s`` ends the copy.
    """
    try:
        for s in (a, b):
            s.settimeout(stall_s)
        while not stop.is_set():
            readable, _, _ = select.select([a, b], [], [], poll_s)
            for src in readable:
                data = src.recv(_CHUNK)
                if not data:
                    return
                (b if src is a else a).sendall(data)
    except (OSError, ValueError):
        return  # a side was closed under us (stop, reset) or stalled: nothing left to copy
    finally:
        if on_end:
            on_end()
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass


class LocalForwarder:
    """Listen on 127.0.0.1:<free port>; connect each accepted socket to ``open_remote()``.

    ``open_remote`` returns a new connected socket-like object per connection
    (a port-forward stream in real use, anything in tests). If it raises, the
    accepted connection is closed and the error is kept in :attr:`errors`. When a
    remote closes and has a ``kubelet_error()`` to tell, ``explain_remote(text)``
    turns it into an error kept in :attr:`errors` too.
    """

    def __init__(self, open_remote: Callable[[], object], host: str = "127.0.0.1", port: int = 0,
                 explain_remote: Callable[[str], CourseError] | None = None) -> None:
        self.open_remote = open_remote
        self.explain_remote = explain_remote
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
            t = threading.Thread(target=pump, args=(conn, remote, self._stop),
                                 kwargs={"on_end": lambda r=remote: self._ended(r)},
                                 daemon=True, name=f"pump :{self.port} #{self.connections}")
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()

    def _ended(self, remote) -> None:
        """Keep what the remote end said when the copy ended (before the client's socket closes)."""
        said = remote.kubelet_error() if hasattr(remote, "kubelet_error") else None
        if said:
            self.errors.append(self.explain_remote(said) if self.explain_remote else ClusterError(said))

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
    """``(kind, name)`` of ``"service/x"``, ``"svc/x"``, ``"pod/x"``, ``"x"`` (a Service), a manifest or a ref."""
    if isinstance(target, ObjectRef):
        target = {"kind": target.kind, "metadata": {"name": target.name}}
    if isinstance(target, dict):
        kind = target.get("kind")
        name = (target.get("metadata") or {}).get("name")
        if kind not in ("Service", "Pod") or not name:
            raise InputError(f"Cannot port-forward to a {kind or 'dict'}.",
                             "Pass a Service or Pod manifest, or 'service/NAME'.")
        return kind, name
    kind, sep, name = str(target).partition("/")
    if not sep:
        return "Service", kind
    kinds = {"service": "Service", "svc": "Service", "services": "Service", "pod": "Pod", "pods": "Pod", "po": "Pod"}
    if kind.lower() not in kinds or not name:
        raise InputError(f"{target!r} is not service/NAME or pod/NAME.", "Write e.g. 'service/vllm-qwen25-coder-7b'.")
    return kinds[kind.lower()], name


class PortForwardStream:
    """One stream of the kubernetes client's port-forward: its socket, and the kubelet's error channel."""

    def __init__(self, forwarding, port: int) -> None:
        self._forwarding, self._port = forwarding, port
        self._socket = forwarding.socket(port)

    def __getattr__(self, name):  # fileno, recv, sendall, settimeout, close: the socket's
        return getattr(self._socket, name)

    def kubelet_error(self) -> str | None:
        """What the kubelet wrote on the error channel (None: nothing)."""
        return self._forwarding.error(self._port) or None


def _kubernetes_opener(cluster, pod: str, namespace: str, port: int) -> Callable[[], PortForwardStream]:
    """A function opening one port-forward stream to ``pod:port`` through the API server."""
    # The kubernetes client is imported when a cluster is used, so offline notebooks start fast.
    from kubernetes import client
    from kubernetes.stream import portforward as k8s_portforward

    core = client.CoreV1Api(cluster.api_client)

    def open_remote() -> PortForwardStream:
        forwarding = k8s_portforward(core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port))
        return PortForwardStream(forwarding, port)

    return open_remote


def _upgrade_refusal(text: str) -> tuple[int, str]:
    """``(status, the API server's message)`` from the client's "Handshake status 403 …" text."""
    m = re.search(r"Handshake status (\d{3})", text)
    code = int(m.group(1)) if m else 0
    # websocket-client writes "Handshake status CODE REASON -+-+- HEADERS -+-+- BODY" (BODY may be None).
    body = text.rpartition(" -+-+- ")[2]
    try:
        return code, json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):   # not a Status body: its text, else the whole line
        return code, text if body in ("", "None") else body


def explain_stream_error(exc: BaseException, pod: str, namespace: str, port: int, host: str) -> ClusterError:
    """A stream that could not be opened → the API server's words and the fix."""
    text = str(getattr(exc, "reason", "") or exc)
    code, said = _upgrade_refusal(text)
    if code == 403:
        return ClusterError(f"Forbidden: you may not port-forward to Pod {namespace}/{pod}. "
                            f"The API server said: {said}",
                            "Port-forwarding needs `get` and `create` on pods/portforward: check with "
                            f"`kubectl auth can-i create pods/portforward -n {namespace}` and ask for a Role "
                            "that grants both.")
    if code == 404:
        return ClusterError(f"Pod {namespace}/{pod} was not found when opening the port-forward. "
                            f"The API server said: {said}",
                            "The Pod was replaced (a rollout, a restart): leave the `with` block and enter it "
                            "again, so a Ready Pod is chosen anew.")
    if code:
        return ClusterError(f"The API server answered {code} to the port-forward to {namespace}/{pod}:{port}: {said}",
                            f"Check the Pod with `kubectl get pod {pod} -n {namespace}` and retry.")
    if getattr(exc, "status", None) not in (None, 0):   # an API answer: its code says what to do
        return explain(exc, f"port-forward to {namespace}/{pod}:{port}")
    return ClusterError(f"Could not open a port-forward stream to {namespace}/{pod}:{port} through {host}: {text}",
                        f"Check that the cluster answers (`kubectl get pods -n {namespace}`) and that nothing between "
                        "you and the API server blocks WebSocket upgrades (some proxies do).")


def kubelet_error(text: str, pod: str, namespace: str, port: int) -> ClusterError:
    """The kubelet's ``error forwarding port …`` text → a ClusterError with it and the fix."""
    what = f"The port-forward to {namespace}/{pod}:{port} failed in the node. The kubelet said: {text.strip()}"
    if "refused" in text:
        return ClusterError(what, f"Nothing listens on port {port} in the Pod: the server is not up yet (wait "
                                  "until the Pod is Ready) or the port is wrong (vLLM listens on --port, "
                                  f"{system().container_port} in the course).")
    return ClusterError(what, f"Check the Pod (`kubectl get pod {pod} -n {namespace}`, `kubectl logs {pod} "
                              f"-n {namespace}`); then leave the `with` block and enter it again.")


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


def _open_first(open_remote: Callable[[], object], said: Callable[[str], CourseError], wait_s: float) -> None:
    """Open one stream and wait ``wait_s`` for the kubelet's error, so a refusal shows now, not later."""
    first = open_remote()
    try:
        # The kubelet writes its error, then closes: the stream turns readable with the text already kept.
        readable, _, _ = select.select([first], [], [], wait_s)
        text = first.kubelet_error() if readable and hasattr(first, "kubelet_error") else None
        if text:
            raise said(text)
    finally:
        first.close()


@contextmanager
def forward(cluster, target: str | dict | ObjectRef | None = None, remote_port: int | str | None = None,
            namespace: str | None = None, local_port: int = 0,
            opener: Callable[[str, str, int], Callable[[], object]] | None = None,
            probe_wait_s: float = PROBE_WAIT_S) -> Iterator[LocalURL]:
    """Forward ``127.0.0.1:<free port>`` to a Ready Pod of a Service (or to a named Pod).

    ``cluster`` is an :class:`llmserve.world.cluster.Cluster` (anything with
    ``list``, ``get``, ``api_client`` and ``host``). ``remote_port`` is a Service port
    name (``"http"``), a Pod port number, or None (the Service's only port;
    required for a Pod). ``target`` may also be a manifest or an
    :class:`~llmserve.world.cluster.ObjectRef`, whose namespace then wins. Yields
    the local URL (a ``str`` with ``.pod`` and ``.remote_port``). A course error
    raised inside the block while the kubelet reported a broken stream is replaced
    by the kubelet's words and the fix. ``opener(pod, namespace, port)`` replaces
    the kubernetes client's stream in tests.
    """
    kind, name = parse_target(target or f"service/{system().service}")
    given_ns = getattr(target, "namespace", None) or (
        (target.get("metadata") or {}).get("namespace") if isinstance(target, dict) else None)
    namespace = given_ns or namespace or system().namespace
    if kind == "Service":
        if cluster.get(ObjectRef("v1", "Service", name, namespace)) is None:
            raise ClusterError(f"There is no Service {namespace}/{name}.",
                               "Apply it first: manifests/base/vllm-service.yaml (the lab's apply cell).")
        endpoint, port = choose_endpoint(service_slices(cluster, name, namespace), name, remote_port)
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
        except CourseError:
            raise
        except Exception as exc:  # noqa: BLE001 - explained
            raise explain_stream_error(exc, pod, namespace, port, host) from None

    def said(text: str) -> ClusterError:
        return kubelet_error(text, pod, namespace, port)

    _open_first(open_remote, said, probe_wait_s)
    fwd = LocalForwarder(open_remote, port=local_port, explain_remote=said)
    try:
        yield LocalURL(fwd.url, pod, port, fwd)
    except CourseError as err:
        # A request failed inside the block: if the kubelet said why, that is the message to show.
        kubelet = [e for e in fwd.errors if isinstance(e, ClusterError)]
        if kubelet:
            raise kubelet[-1] from err
        raise
    finally:
        fwd.close()
