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
failure into a :class:`~llmserve.errors.ServerError` that names the fix.
"""
from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from llmserve.errors import ClusterError, InputError, ServerError

NAMESPACE = "ai-platform"
SERVICE = "vllm-qwen25-coder-7b"
#: The label the EndpointSlice controller puts on every slice of a Service.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_CHUNK = 64 * 1024


# -- choosing a Pod from the EndpointSlices (pure) -------------------------------------
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


def choose_endpoint(slices: list[dict], service: str = SERVICE, port: int | str | None = None) -> tuple[Endpoint, int]:
    """A Ready Pod of the Service and the Pod port to forward to.

    ``port`` is a Service port *name* (looked up in the slices' ports, which
    hold the resolved Pod port number), or a number (taken as the Pod port),
    or None (the slices' only port). Raises :class:`ClusterError` with the fix
    when no Pod is Ready or the port is unknown.
    """
    eps = endpoints(slices)
    if not slices or not eps:
        raise ClusterError(
            f"Service {service} has no endpoints: {describe_endpoints(slices)}.",
            "Check the Service's selector against the Pod labels (llmserve.services.selector_report) and that "
            "the Deployment has a Pod: `kubectl get pods -n ai-platform -l app.kubernetes.io/name=" + service + "`.")
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
                "(llmserve.services.selector_report).")
        return chosen, ports[port]
    return chosen, int(port)


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
    if hasattr(target, "kind") and hasattr(target, "name"):  # llmserve.cluster.ObjectRef
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
    from llmserve.cluster import explain
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
                        "Check that the cluster answers (`kubectl get pods -n ai-platform`) and that nothing between "
                        "you and the API server blocks WebSocket upgrades (some proxies do).")


def service_slices(cluster, service: str = SERVICE, namespace: str = NAMESPACE) -> list[dict]:
    """The EndpointSlices of one Service (``discovery.k8s.io/v1``, by the service-name label)."""
    return cluster.list("discovery.k8s.io/v1", "EndpointSlice", namespace=namespace,
                        label_selector=f"{SERVICE_NAME_LABEL}={service}")


def wait_for_ready_endpoint(cluster, service: str = SERVICE, namespace: str = NAMESPACE,
                            timeout_s: float = 600.0, interval_s: float = 5.0,
                            progress: Callable[[float, str], None] | None = None,
                            clock: Callable[[], float] = time.monotonic,
                            sleep: Callable[[float], None] = time.sleep) -> list[dict]:
    """Poll the Service's EndpointSlices until one endpoint is Ready; return the slices.

    ``progress(elapsed_s, status)`` is called after every poll (status: the
    endpoints in one line). Raises :class:`ClusterError` after ``timeout_s``
    with the last status and the fix.
    """
    start = clock()
    while True:
        slices = service_slices(cluster, service, namespace)
        eps = endpoints(slices)
        status = "; ".join(str(e) for e in eps) if eps else describe_endpoints(slices)
        elapsed = clock() - start
        if progress:
            progress(elapsed, status)
        if any(e.ready and e.pod for e in eps):
            return slices
        if elapsed >= timeout_s:
            raise ClusterError(
                f"Service {namespace}/{service} had no Ready endpoint after {timeout_s:.0f} s (last: {status}).",
                "If an endpoint is listed NOT ready, the Pod is still loading or failing its readiness probe: see "
                "the Deployment chapter's diagnosis. If none is listed, check the selector "
                "(llmserve.services.selector_report) and that the Deployment has a Pod.")
        sleep(interval_s)


@contextmanager
def forward(cluster, target: str | dict = f"service/{SERVICE}", remote_port: int | str | None = None,
            namespace: str = NAMESPACE, local_port: int = 0,
            opener: Callable[[str, str, int], Callable[[], object]] | None = None) -> Iterator[LocalURL]:
    """Forward ``127.0.0.1:<free port>`` to a Ready Pod of a Service (or to a named Pod).

    ``cluster`` is an :class:`llmserve.cluster.Cluster` (anything with
    ``list``, ``get``, ``api_client`` and ``host``). ``remote_port`` is a
    Service port name (``"http"``), a Pod port number, or None (the Service's
    only port; required for a Pod). ``target`` may also be a manifest or an
    :class:`~llmserve.cluster.ObjectRef`, whose namespace then wins. Yields the local URL (a ``str`` with
    ``.pod`` and ``.remote_port``). ``opener(pod, namespace, port)`` replaces
    the kubernetes client's stream in tests.
    """
    kind, name = parse_target(target)
    given_ns = getattr(target, "namespace", None) or (
        (target.get("metadata") or {}).get("namespace") if isinstance(target, dict) else None)
    namespace = given_ns or namespace
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
    from llmserve.cluster import ObjectRef
    return ObjectRef("v1", "Service", name, namespace)


# -- HTTP checks against vLLM -------------------------------------------------------
@dataclass(frozen=True)
class HttpResult:
    url: str
    status: int
    text: str

    @property
    def json(self):
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    def __str__(self) -> str:
        body = self.text if len(self.text) < 300 else self.text[:297] + "…"
        return f"GET {self.url} → {self.status} {body}"


def api_key_from_env() -> str | None:
    """The API key the course reads from ``VLLM_API_KEY`` (None when unset or empty)."""
    return os.environ.get("VLLM_API_KEY") or None


def model_ids(result: HttpResult) -> list[str]:
    """The served model names in a ``/v1/models`` answer."""
    data = result.json or {}
    return [m.get("id") for m in data.get("data", []) if isinstance(m, dict)]


def http_get(url: str, path: str = "/health", timeout: float = 5.0, api_key: str | None = None) -> HttpResult:
    """GET ``url + path``; any failure becomes a :class:`ServerError` naming the fix.

    vLLM guards ``/v1/*`` with the API key (``--api-key`` or ``VLLM_API_KEY``)
    and leaves ``/health`` open (vLLM's AuthenticationMiddleware).
    """
    full = url.rstrip("/") + "/" + path.lstrip("/")
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(full, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return HttpResult(full, resp.status, resp.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as err:
        body = err.read().decode("utf-8", "replace") if err.fp else ""
        raise _http_error(full, err.code, body, api_key) from None
    except urllib.error.URLError as err:
        raise _connection_error(full, err.reason, timeout) from None
    except (socket.timeout, TimeoutError) as err:
        raise _connection_error(full, err, timeout) from None
    except (ConnectionError, OSError) as err:  # reset / closed mid-answer (http.client.RemoteDisconnected)
        raise _connection_error(full, err, timeout) from None


def _http_error(url: str, status: int, body: str, api_key: str | None) -> ServerError:
    if status == 401:
        if api_key:
            return ServerError(f"{url} answered 401 Unauthorized: the API key you sent is not the server's.",
                               "Set VLLM_API_KEY to the key in the Secret vllm-api-key: "
                               "`kubectl get secret vllm-api-key -n ai-platform -o jsonpath='{.data.api-key}' | base64 -d`.")
        return ServerError(f"{url} answered 401 Unauthorized: this vLLM server wants an API key "
                           "(it was started with --api-key or VLLM_API_KEY).",
                           "Export VLLM_API_KEY with the key from the Secret vllm-api-key and re-run: "
                           "`kubectl get secret vllm-api-key -n ai-platform -o jsonpath='{.data.api-key}' | base64 -d`.")
    if status == 404:
        return ServerError(f"{url} answered 404 Not Found.",
                           "Check the path: vLLM's OpenAI server has /health, /v1/models, /v1/chat/completions.")
    if status >= 500:
        return ServerError(f"{url} answered {status}: {body[:200]}",
                           "The server is up but failing: read the Pod's logs (`kubectl logs -n ai-platform "
                           "deploy/vllm-qwen25-coder-7b`).")
    return ServerError(f"{url} answered {status}: {body[:200]}", "Read the message above; it comes from vLLM.")


def _connection_error(url: str, reason, timeout: float) -> ServerError:
    if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason):
        return ServerError(f"{url} did not answer within {timeout:g} s.",
                           "The server may still be loading the model (the Pod is not Ready), or is busy: wait and "
                           "retry with a longer timeout; check `kubectl get pods -n ai-platform`.")
    if isinstance(reason, ConnectionRefusedError) or "refused" in str(reason).lower():
        return ServerError(f"Connection refused at {url}: nothing listens there.",
                           "Open the port-forward first (`with portforward.forward(cluster) as url:`) and use the "
                           "URL it yields inside the `with` block; locally, start the server.")
    return ServerError(f"The connection to {url} closed without an answer ({type(reason).__name__}: {reason}).",
                       "Through a port-forward this means nothing listens on that Pod port: the server is not up yet "
                       "or the remote port is wrong (vLLM listens on --port, 8000 in the course).")
