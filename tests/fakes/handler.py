"""The fake API server's request handler: routing, the verbs, subresources and watches.

Split from :mod:`tests.fakes.apiserver`, which documents the behaviour and its sources.
"""
from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.fakes import portforward, resources, selectors, status
from tests.fakes.recorded import APPLY, PATCH_TYPES, VERSION, Request, parse_path, request_verb
from tests.fakes.selectors import SelectorError

if TYPE_CHECKING:
    from tests.fakes.apiserver import FakeAPIServer


class Handler(BaseHTTPRequestHandler):
    """One request of the fake: route it, record it, answer it (``api`` is set per server)."""

    api: "FakeAPIServer"
    protocol_version = "HTTP/1.1"   # keep-alive and chunked watches, as the real server

    def log_message(self, *args):   # keep pytest's output clean
        pass

    def setup(self):
        super().setup()
        self.api.connections.add(self.connection)   # so stop() can close kept-alive connections

    def finish(self):
        self.api.connections.discard(self.connection)
        super().finish()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self):
        split = urlsplit(self.path)
        request = Request(self.command, split.path.rstrip("/") or "/", parse_qs(split.query, keep_blank_values=True),
                          {k.lower(): v for k, v in self.headers.items()}, self._read_body())
        parsed = parse_path(request.path)
        if parsed:
            resource, namespace, name, sub = parsed
            request.group, request.resource, request.subresource = resource.group, resource.plural, sub
            request.namespace, request.name = namespace, name
            request.verb = request_verb(self.command, name, request.query)
        self.api.record(request)
        injected = self.api.injected_for(self.command, request.path)
        if injected:
            time.sleep(injected.delay_s)
            if injected.error is not None:
                return self._status(request, injected.error)
        try:
            if parsed is None:
                return self._non_resource(request)
            denied = self.api.denial(request)
            if denied:
                return self._status(request, denied)
            return self._resource(request, *parsed)
        except status.ApiError as err:
            return self._status(request, err)
        except SelectorError as err:
            return self._status(request, status.bad_request(str(err)))
        except (BrokenPipeError, ConnectionResetError):
            return None

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    # -- answers ---------------------------------------------------------------
    def _send(self, request: Request, code: int, body: bytes, content_type: str = "application/json"):
        request.code = code
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _json(self, request: Request, code: int, obj) -> None:
        self._send(request, code, json.dumps(obj).encode())

    def _status(self, request: Request, err: status.ApiError) -> None:
        self._send(request, err.code, err.encoded())

    def _non_resource(self, request: Request) -> None:
        path = request.path
        if path == "/version":
            return self._json(request, 200, VERSION)
        if path == "/api":
            return self._json(request, 200, resources.api_versions())
        if path == "/apis":
            return self._json(request, 200, resources.api_group_list())
        if path in ("/healthz", "/readyz", "/livez"):
            return self._send(request, 200, b"ok", "text/plain")
        parts = [p for p in path.split("/") if p]
        doc = None
        if parts == ["api", "v1"]:
            doc = resources.api_resource_list("", "v1")
        elif len(parts) == 3 and parts[0] == "apis":
            doc = resources.api_resource_list(parts[1], parts[2])
        if doc is not None:
            return self._json(request, 200, doc)
        return self._status(request, status.ApiError(404, "NotFound",
                                                     "the server could not find the requested resource"))

    def _resource(self, request: Request, resource, namespace, name, sub) -> None:
        if resource.namespaced is False and namespace:
            raise status.ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub:
            return self._subresource(request, resource, namespace, name, sub)
        method = self.command
        if method in ("GET", "HEAD") and request.verb == "watch":
            return self._watch(request, resource, namespace)
        if method in ("GET", "HEAD") and name:
            obj = self.api.store.get(resource, namespace, name)
            if obj is None:
                raise status.not_found(resource, name)
            return self._json(request, 200, obj)
        if method in ("GET", "HEAD"):
            items = self.api.store.list(resource, namespace, request.param("labelSelector"),
                                   request.param("fieldSelector"))
            return self._json(request, 200, {"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
                                             "metadata": {"resourceVersion": str(self.api.store.revision)},
                                             "items": items})
        if method == "POST" and not name:
            obj = self.api.store.create(resource, namespace, self._body_object(request, resource),
                                   manager=request.param("fieldManager") or "")
            self.api.reconcile()
            return self._json(request, 201, obj)
        if method == "PATCH" and name:
            return self._patch(request, resource, namespace, name)
        if method == "DELETE" and name:
            obj = self.api.store.delete(resource, namespace, name)
            self.api.reconcile()
            return self._json(request, 200, obj)
        raise status.method_not_allowed(method, request.path)

    def _body_object(self, request: Request, resource) -> dict:
        try:
            obj = request.json()
        except ValueError:
            raise status.bad_request("the body of the request is not valid JSON") from None
        if not isinstance(obj, dict) or obj.get("kind") != resource.kind:
            raise status.bad_request(f"the object provided is not a {resource.kind}")
        return obj

    def _patch(self, request: Request, resource, namespace, name) -> None:
        ctype = request.content_type
        if ctype not in PATCH_TYPES:
            raise status.unsupported_media_type(ctype)
        force = request.param("force")
        manager = request.param("fieldManager") or ""
        if ctype != APPLY and force is not None:
            raise status.invalid("PatchOptions", "meta.k8s.io", "",
                                 [("force", "FieldValueForbidden", "Forbidden: may not be specified for "
                                                                   "non-apply patch")])
        if ctype == APPLY:
            if not manager:
                raise status.invalid("PatchOptions", "meta.k8s.io", "",
                                     [("fieldManager", "FieldValueRequired",
                                       "Required value: is required for apply patch")])
            try:
                applied = request.manifest()
            except yaml.YAMLError as exc:
                raise status.bad_request(f"error decoding YAML: {exc}") from None
            if not isinstance(applied, dict):
                raise status.bad_request("the body of an apply patch must be an object")
            if applied.get("apiVersion") != resource.api_version or applied.get("kind") != resource.kind:
                raise status.bad_request(f"the API version in the data ({applied.get('apiVersion')}) does not "
                                         f"match the expected API version ({resource.api_version})")
            if (applied.get("metadata") or {}).get("name") != name:
                raise status.bad_request("the name of the object does not match the name on the URL")
            obj, created = self.api.store.apply(resource, namespace, name, applied, manager,
                                           force=str(force).lower() == "true")
            request.created = created
            self.api.reconcile()
            return self._json(request, 201 if created else 200, obj)
        try:
            patch = request.json()
        except ValueError:
            raise status.bad_request("the body of the request is not valid JSON") from None
        obj = self.api.store.patch(resource, namespace, name, ctype, patch)
        self.api.reconcile()
        return self._json(request, 200, obj)

    def _subresource(self, request: Request, resource, namespace, name, sub) -> None:
        if resource.kind == "Pod" and sub == "log" and self.command == "GET":
            pod = self.api.store.get(resource, namespace, name)
            if pod is None:
                raise status.not_found(resource, name)
            container = request.param("container") or pod["spec"]["containers"][0]["name"]
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            if not any(s.get("name") == container and "running" in (s.get("state") or {}) for s in statuses):
                raise status.bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                                         f'ContainerCreating')
            text = self.api.logs.get((namespace, name), "")
            tail = request.param("tailLines")
            if tail is not None:
                text = "".join(text.splitlines(keepends=True)[-int(tail):])
            return self._send(request, 200, text.encode(), "text/plain")
        if resource.kind == "Pod" and sub == "portforward" and self.command == "GET":
            return self._port_forward(request, resource, namespace, name)
        raise status.ApiError(404, "NotFound", "the server could not find the requested resource")

    def _port_forward(self, request: Request, resource, namespace, name) -> None:
        if self.api.store.get(resource, namespace, name) is None:
            raise status.not_found(resource, name)
        ports = [int(p) for v in request.query.get("ports", []) for p in v.split(",") if p]
        if not ports:
            raise status.bad_request('query parameter "port" is required')
        if not portforward.handshake(self):
            request.code = 400
            return
        request.code = 101
        port = ports[0]
        pod_port = self.api.pod_ports.get((namespace, name, port)) or self.api.any_pod_port or portforward.PodPort()
        portforward.serve(self, port, pod_port, self.api.stopping)
        self.close_connection = True

    def _watch(self, request: Request, resource, namespace) -> None:
        labels = selectors.parse_labels(request.param("labelSelector"))
        fields = selectors.parse_fields(request.param("fieldSelector"), resource.plural)
        since = request.param("resourceVersion")
        timeout = min(float(request.param("timeoutSeconds") or self.api.max_watch_s), self.api.max_watch_s)
        request.code = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with self.api.store.changed:
            revision = self.api.store.revision
            initial = [] if since not in (None, "", "0") else self.api.store.list(resource, namespace)
        if since not in (None, "", "0"):
            revision = int(since)
        try:
            for obj in initial:
                if selectors.matches(obj, labels, fields):
                    self._chunk({"type": "ADDED", "object": obj})
            deadline = time.monotonic() + timeout
            while not self.api.stopping.is_set() and time.monotonic() < deadline:
                self.api.store.wait_for_change(revision, min(0.2, max(deadline - time.monotonic(), 0)))
                for rv, kind, res, obj in self.api.store.changes_after(revision):
                    revision = rv
                    ns_ok = namespace is None or obj["metadata"].get("namespace") == namespace
                    if res == resource and ns_ok and selectors.matches(obj, labels, fields):
                        self._chunk({"type": kind, "object": obj})
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _chunk(self, event: dict) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
