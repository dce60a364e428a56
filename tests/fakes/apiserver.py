"""A recording stand-in for the Kubernetes API server: it keeps every request whole and answers as the real one.

Tests point a kubeconfig at it (:meth:`FakeAPIServer.kubeconfig`) and drive the
course's own :class:`llmserve.world.cluster.Cluster` and port-forward through the
real kubernetes Python client. Afterwards they read :attr:`FakeAPIServer.requests`:
each :class:`Request` holds the method, path, query, headers and body as sent,
plus what the real server's request resolver makes of it (verb, API group,
resource, subresource, namespace, name) — the attributes RBAC authorizes
(staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go;
https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-the-request-verb).

Behaviour the course depends on, and its source:

* **server-side apply** needs ``Content-Type: application/apply-patch+yaml`` and a
  ``fieldManager``; without one the answer is 422 ``fieldManager: Required value:
  is required for apply patch``; ``force`` on any other patch is 422 ``force:
  Forbidden: may not be specified for non-apply patch`` (``ValidatePatchOptions``,
  staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/validation/validation.go). An
  apply that creates the object answers 201 and is also authorized as ``create``
  (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go). The Python
  client's ``server_side_apply`` sends exactly these (kubernetes/dynamic/client.py).
  Conflicts and forcing: :mod:`tests.fakes.store`.
* **lists** honour ``labelSelector`` and ``fieldSelector`` (:mod:`tests.fakes.selectors`);
  **watches** (``?watch=true``) stream one JSON event per line,
  ``{"type": "ADDED"|"MODIFIED"|"DELETED", "object": …}``, starting with the
  current objects when no ``resourceVersion`` is given, until ``timeoutSeconds``
  (https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes;
  the client's reader is kubernetes/watch/watch.py).
* **failures** are ``Status`` bodies (:mod:`tests.fakes.status`); RBAC denials
  (:meth:`FakeAPIServer.forbid`) carry the real message ``… is forbidden: User "…"
  cannot <verb> resource "<resource>" in API group "<group>" in the namespace "…"``.
* **port-forward** upgrades to WebSocket ``v4.channel.k8s.io`` (:mod:`tests.fakes.portforward`);
  a missing Pod is 404 before the upgrade, a denial 403. Since Kubernetes 1.35 the
  upgrade (a GET) is authorized as ``get`` and also ``create`` on ``pods/portforward``
  (feature gate AuthorizePodWebsocketUpgradeCreatePermission, KEP-4006;
  https://kubernetes.io/docs/reference/command-line-tools-reference/feature-gates/).

Every loop is bounded: watches end after ``timeoutSeconds`` (at most
``max_watch_s``), streams poll a stop event that :meth:`stop` sets.
"""
from __future__ import annotations

import json
import re
import socket
import threading
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

from tests.fakes import controllers, portforward, resources, status
from tests.fakes.handler import Handler
from tests.fakes.recorded import Request
from tests.fakes.store import Store

DEFAULT_USER = "system:serviceaccount:ai-platform:workshop-participant"


@dataclass
class _Injected:
    method: str
    path: str                         # exact path, or a regular expression when it starts with "^"
    error: status.ApiError | None
    delay_s: float = 0.0
    body: bytes | None = None         # answer 200 with this body instead of an error

    def matches(self, method: str, path: str) -> bool:
        if self.method != method:
            return False
        return bool(re.fullmatch(self.path, path)) if self.path.startswith("^") else self.path == path


@dataclass
class _Forbidden:
    verb: str
    resource: str                     # "pods" or "pods/portforward"
    namespace: str | None = None      # None: everywhere


class FakeAPIServer:
    """A loopback API server over an in-memory store, recording every request."""

    def __init__(self, *, controllers_on: bool = False, user: str = DEFAULT_USER, max_watch_s: float = 5.0) -> None:
        self.store = Store()
        self.events = controllers.EventRecorder(self.store)
        self.controllers_on = controllers_on
        self.user = user
        self.max_watch_s = max_watch_s
        self.requests: list[Request] = []
        self.pod_ports: dict[tuple[str, str, int], portforward.PodPort] = {}
        self.any_pod_port: portforward.PodPort | None = None   # for Pods made by the stand-in controllers
        self.logs: dict[tuple[str, str], str] = {}
        self._injected: list[_Injected] = []
        self._forbidden: list[_Forbidden] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.connections: set = set()   # open client connections (HTTP/1.1 keeps them alive)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), type("BoundHandler", (Handler,), {"api": self}))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="fake-apiserver", daemon=True)

    # -- life ----------------------------------------------------------------
    def start(self) -> "FakeAPIServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        with self.store.changed:
            self.store.changed.notify_all()
        self._server.shutdown()
        self._server.server_close()
        for conn in list(self.connections):   # a stopped server answers nobody, not even kept-alive clients
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)

    def __enter__(self) -> "FakeAPIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- set-up ----------------------------------------------------------------
    def kubeconfig(self, path: Path, context: str = "course", contexts: tuple[str, ...] = ()) -> Path:
        """Write a kubeconfig whose context(s) point here (a bearer token, no TLS)."""
        names = contexts or (context,)
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": context,
               "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
               "users": [{"name": "learner", "user": {"token": "not-a-real-token"}}],
               "contexts": [{"name": c, "context": {"cluster": "fake", "user": "learner"}} for c in names]}
        path.write_text(json.dumps(doc))   # JSON is YAML
        return path

    def put(self, *objects: dict, manager: str = "kubectl") -> None:
        """Objects that exist before the test acts (created by someone else: ``manager``)."""
        for obj in objects:
            self.store.put(obj, manager=manager)
        self.reconcile()

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        resource = resources.by_kind(api_version, kind)
        return self.store.get(resource, namespace if resource.namespaced else None, name)

    def fail(self, method: str, path: str, code: int, reason: str, message: str, details: dict | None = None,
             delay_s: float = 0.0) -> None:
        """Answer ``method path`` with this Status (after ``delay_s``)."""
        self._injected.append(_Injected(method, path, status.ApiError(code, reason, message, details), delay_s))

    def slow(self, method: str, path: str, delay_s: float) -> None:
        """Answer ``method path`` normally, but only after ``delay_s``."""
        self._injected.append(_Injected(method, path, None, delay_s))

    def forbid(self, verb: str, resource: str, namespace: str | None = None) -> None:
        """RBAC says no to ``verb`` on ``resource`` (e.g. ``"create", "pods/portforward"``)."""
        self._forbidden.append(_Forbidden(verb, resource, namespace))

    def forward_pod_port(self, namespace: str, pod: str, port: int, address: tuple[str, int] | None = None,
                         kubelet_error: str | None = None) -> None:
        """What the kubelet finds behind ``pod:port``: a listener at ``address``, nothing, or a given error."""
        self.pod_ports[(namespace, pod, port)] = portforward.PodPort(address, kubelet_error)

    # -- reading what was sent ----------------------------------------------------
    def sent(self, method: str | None = None, resource: str | None = None, verb: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if (method is None or r.method == method)
                    and (resource is None or r.resource == resource) and (verb is None or r.verb == verb)]

    def deletes(self) -> list[str]:
        """Every DELETE, as ``"DELETE <path>"`` in the order sent."""
        return [f"DELETE {r.path}" for r in self.sent("DELETE")]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- what the handler asks (tests.fakes.handler) -------------------------------
    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def reconcile(self) -> None:
        if self.controllers_on:
            controllers.reconcile(self.store, self.events)

    def injected_for(self, method: str, path: str) -> _Injected | None:
        return next((i for i in self._injected if i.matches(method, path)), None)

    def denial(self, request: Request) -> status.ApiError | None:
        for verb, group, what, namespace in request.authorized_as():
            for rule in self._forbidden:
                if rule.verb == verb and rule.resource == what and rule.namespace in (None, namespace):
                    res = resources.by_plural(group, "v1", what.split("/")[0])
                    return status.forbidden(self.user, verb, res, namespace, request.name,
                                            what.split("/")[1] if "/" in what else "")
        return None
