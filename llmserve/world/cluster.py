"""Talking to a real Kubernetes cluster, with every failure explained (Live).

Used by every lab notebook in live mode (storage, Deployment, Service, the
capstone, the workshop's box check). All calls go through :class:`Cluster`;
every exception the kubernetes client or the network raises is turned into a
:class:`~llmserve.core.errors.ClusterError` that names the fix (:func:`explain`).

Objects come back as plain dicts in the API's own JSON shape (camelCase keys),
the same shape ``kubectl get -o json`` prints; the Deployment chapter's rollout
diagnosis (:mod:`llmserve.deployment.live`) reads them.

Retries: the probe in :func:`probe` makes one attempt (an offline laptop learns
in seconds); a :class:`Cluster` retries a refused connection twice and never
repeats a request that timed out. Both are set before the client's connection
pool is built (setting ``configuration.retries`` afterwards has no effect).

Safety rules:

* :meth:`Cluster.apply` uses server-side apply (``fieldManager=llmserve-course``,
  ``force=true``), so re-running a cell is safe.
* Every delete goes through :meth:`Cluster.delete`. :meth:`Cluster.cleanup`
  deletes only objects this session applied that still carry the course's label,
  newest first, and by default keeps the Namespace.
* **No request of the course can delete a PersistentVolume.** :meth:`Cluster.delete`
  refuses the kind, and the client every Cluster builds refuses any ``DELETE`` of
  ``…/api/v1/persistentvolumes…`` before it leaves the process, whichever API
  object sends it. The course's PV has ``persistentVolumeReclaimPolicy: Retain``,
  and Kubernetes never deletes a hostPath's files anyway; keeping the PV keeps the
  reservation of the weights' folder too.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlsplit

from llmserve.core.errors import ClusterError, CourseError
from llmserve.core.names import system
from llmserve.core.objects import selector_of
from llmserve.core.waiting import wait_until

FIELD_MANAGER = "llmserve-course"
COURSE_LABEL = ("app.kubernetes.io/part-of", "vllm-course")
DEFAULT_KEEP_KINDS = ("PersistentVolume", "Namespace")
NEVER_DELETED = "PersistentVolume"
KEEP_REASONS = {
    "PersistentVolume": "the course never deletes a PersistentVolume: it frames the weights on the node",
    "Namespace": "deleting it would delete everything in it, the claim included",
}
PATCH_TYPES = {"json": "application/json-patch+json", "merge": "application/merge-patch+json"}
# A DELETE of one PersistentVolume or of all of them, whatever prefix a proxy puts before /api.
_PV_URL = re.compile(r"/api/v1/persistentvolumes(/[^/]+)?/?$")


def kubeconfig_path() -> Path:
    """The kubeconfig the kubernetes client would read (first entry of $KUBECONFIG)."""
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return Path(env.split(os.pathsep)[0]).expanduser()
    return Path("~/.kube/config").expanduser()


@dataclass(frozen=True)
class ObjectRef:
    """Which object: enough to get, watch or delete it again."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"

    @classmethod
    def of(cls, obj: dict) -> "ObjectRef":
        meta = obj.get("metadata", {})
        return cls(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))


def refuse_volume_delete(what: str) -> CourseError:
    return CourseError(f"Refused to delete {what}: the course never deletes a PersistentVolume.",
                       "The volume frames the model weights on the node and keeps their folder reserved. "
                       "An administrator who really means it runs `kubectl delete pv NAME` by hand.")


# -- explaining failures ---------------------------------------------------------------
def explain(exc: BaseException, action: str, host: str = "the API server") -> ClusterError:
    """Turn any exception from the kubernetes client into a ClusterError naming the fix."""
    if isinstance(exc, ClusterError):
        return exc
    # The kubernetes client is imported when a cluster is used, so offline notebooks start fast.
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    import urllib3.exceptions as u3

    if isinstance(exc, ConfigException):
        return ClusterError(f"The kubeconfig could not be used while trying to {action}: {exc}",
                            f"Check {kubeconfig_path()} (`kubectl config view`) or set KUBECONFIG to a valid file.")
    if isinstance(exc, ApiException):
        return _explain_status(exc, action)
    # urllib3 wraps the real cause in MaxRetryError once its retries are spent.
    cause = exc.reason if isinstance(exc, u3.MaxRetryError) and exc.reason is not None else exc
    unreachable = ClusterError(f"Could not reach {host} while trying to {action} ({_short(cause)}).",
                               "Is the cluster running? Check `kubectl cluster-info`, the server address in the "
                               "kubeconfig, and any VPN or port-forward it needs.")
    # NewConnectionError (refused, no route, bad name) subclasses ConnectTimeoutError in urllib3 2.
    if isinstance(cause, u3.NewConnectionError):
        return unreachable
    if isinstance(cause, (u3.ReadTimeoutError, u3.ConnectTimeoutError, TimeoutError)):
        return ClusterError(f"{host} did not answer in time while trying to {action} ({_short(cause)}).",
                            "The API server is overloaded or the network drops packets: retry, check "
                            "`kubectl get --raw /readyz`, or raise the request timeout "
                            "(Cluster(request_timeout_s=…)).")
    if isinstance(cause, u3.SSLError):
        return ClusterError(f"The TLS handshake with {host} failed while trying to {action} ({_short(cause)}).",
                            "The kubeconfig's certificate-authority-data does not match the server: copy the "
                            "kubeconfig from the cluster again.")
    if isinstance(cause, (ConnectionError, u3.ProtocolError, OSError)) or isinstance(exc, u3.MaxRetryError):
        return unreachable
    return ClusterError(f"Unexpected failure while trying to {action}: {type(exc).__name__}: {exc}",
                        "Check the cluster with `kubectl cluster-info`; if it is healthy, report this as a course bug.")


def _explain_status(exc, action: str) -> ClusterError:
    """An answer of the API server (a ``Status`` body) → the fix for its code."""
    reason, details, ns = _api_message(exc), _api_details(exc), system().namespace
    if exc.status == 401:
        return ClusterError(f"The cluster rejected your credentials while trying to {action} (401 Unauthorized).",
                            "Your token or certificate has expired or is wrong: refresh the kubeconfig "
                            "(for k3s, copy /etc/rancher/k3s/k3s.yaml again).")
    if exc.status == 403:
        return ClusterError(f"Forbidden by RBAC: could not {action}. The API server said: {reason}",
                            "Ask the cluster admin for a Role (or ClusterRole for PersistentVolumes) that "
                            f"grants these verbs, or check with `kubectl auth can-i --list -n {ns}`.")
    if exc.status == 404 and details.get("kind") == "namespaces":
        name = details.get("name", ns)
        return ClusterError(f"The namespace {name!r} does not exist, so the cluster could not {action}: {reason}",
                            f"Create it first: apply manifests/base/namespace.yaml "
                            f"(`kubectl create namespace {name}` also works).")
    if exc.status == 404:
        return ClusterError(f"Not found while trying to {action}: {reason}",
                            "Create what is missing first (the namespace: apply manifests/base/namespace.yaml), "
                            "or check the name and namespace.")
    if exc.status == 409:
        return ClusterError(f"Conflict while trying to {action}: {reason}",
                            "Another manager owns these fields; re-run, or inspect with `kubectl get -o yaml`.")
    if exc.status == 422:
        return ClusterError(f"The API server refused the object while trying to {action}: {reason}",
                            "Fix the field it names; validate offline with llmserve.world.manifests.validate().")
    return ClusterError(f"The API server answered {exc.status} while trying to {action}: {reason}",
                        f"Read the message above; `kubectl get events -n {ns}` may say more.")


def _api_details(exc) -> dict:
    try:
        return json.loads(exc.body).get("details") or {}
    except (TypeError, ValueError, AttributeError):
        return {}


def _api_message(exc) -> str:
    try:
        return json.loads(exc.body).get("message", exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", None) or exc)
    return text if len(text) < 160 else text[:157] + "…"


# -- connecting -------------------------------------------------------------------------
def _refuse_volume_deletes(api_client) -> None:
    """Make ``api_client`` refuse any DELETE of a PersistentVolume, whichever API object sends it.

    Every HTTP request of the client (typed APIs, the dynamic client, raw
    ``call_api``) passes through ``rest_client.request``; WebSocket streams are GETs.
    """
    send = api_client.rest_client.request

    def request(method, url, *args, **kwargs):
        if str(method).upper() == "DELETE" and _PV_URL.search(urlsplit(url).path):
            raise refuse_volume_delete(urlsplit(url).path)
        return send(method, url, *args, **kwargs)

    api_client.rest_client.request = request


def _load_api_client(context: str | None, retries=None):
    """An ApiClient for ``context`` (or the current one), with ``retries`` set before its pool is built."""
    # The kubernetes client is imported when a cluster is used, so offline notebooks start fast.
    from kubernetes import client, config

    cfg = client.Configuration()
    path = kubeconfig_path()
    if not path.exists():
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            try:
                config.load_incluster_config(client_configuration=cfg)
            except config.ConfigException as exc:
                raise ClusterError(f"Running inside a Pod, but its ServiceAccount cannot be used: {exc}",
                                   "Let the Pod mount its token (automountServiceAccountToken: true) or set "
                                   "KUBECONFIG to a kubeconfig file.") from None
            cfg.retries = retries
            return _guarded(client.ApiClient(cfg)), "in-cluster"
        raise ClusterError(f"No kubeconfig at {path}.",
                           "Copy your cluster's kubeconfig there or set KUBECONFIG "
                           "(k3s: /etc/rancher/k3s/k3s.yaml; kind: `kind get kubeconfig`).")
    try:
        contexts, current = config.list_kube_config_contexts(config_file=str(path))
    except Exception as exc:  # noqa: BLE001 - a file that is not a kubeconfig fails in many ways
        raise ClusterError(f"{path} is not a usable kubeconfig: {_short(exc)}",
                           "Check the file with `kubectl config view`, or point KUBECONFIG at the right "
                           "file.") from None
    names = [c["name"] for c in contexts]
    wanted = context or os.environ.get("COURSE_CONTEXT") or (current or {}).get("name")
    if wanted not in names:
        raise ClusterError(f"Context {wanted!r} is not in {path} (it has: {', '.join(names) or 'none'}).",
                           "Pick one with `kubectl config use-context NAME` or set COURSE_CONTEXT to one of them.")
    try:
        config.load_kube_config(config_file=str(path), context=wanted, client_configuration=cfg,
                                persist_config=False)
    except Exception as exc:  # noqa: BLE001
        raise ClusterError(f"Context {wanted!r} in {path} cannot be used: {_short(exc)}",
                           "Check its cluster, user and certificate entries with `kubectl config view`.") from None
    cfg.retries = retries
    return _guarded(client.ApiClient(cfg)), wanted


def _guarded(api_client):
    _refuse_volume_deletes(api_client)
    return api_client


def probe(timeout_s: float = 3.0, context: str | None = None) -> dict:
    """Ask the API server for its version; raise ClusterError if that fails."""
    # No retries: an offline laptop should learn in seconds, not minutes.
    api_client, ctx = _load_api_client(context, retries=0)
    host = api_client.configuration.host
    from kubernetes import client  # loaded by _load_api_client already
    try:
        version = client.VersionApi(api_client).get_code(_request_timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - every failure is explained
        raise explain(exc, "read the cluster version", host) from None
    return {"host": host, "version": version.git_version, "context": ctx}


# -- the cluster ------------------------------------------------------------------------
class Cluster:
    """A connection to one cluster context, with the course's safe verbs."""

    def __init__(self, context: str | None = None, request_timeout_s: float = 15.0) -> None:
        # Two quick retries for a refused connection; none for a read timeout
        # (the request may have been done: the caller decides).
        import urllib3  # with the kubernetes client, loaded only when connecting
        retries = urllib3.Retry(total=2, connect=2, read=0, status=0, other=0, backoff_factor=0.2)
        self.api_client, self.context = _load_api_client(context, retries=retries)
        self.host = self.api_client.configuration.host
        self.request_timeout_s = request_timeout_s
        self.applied: list[ObjectRef] = []
        self._dynamic = None

    # -- plumbing ----------------------------------------------------------
    @property
    def dynamic(self):
        if self._dynamic is None:
            from kubernetes.dynamic import DynamicClient
            try:
                self._dynamic = DynamicClient(self.api_client)
            except Exception as exc:  # noqa: BLE001
                raise explain(exc, "discover the cluster's APIs", self.host) from None
        return self._dynamic

    @property
    def core(self):
        """The typed core/v1 API (Pods, logs; no discovery round-trips)."""
        from kubernetes import client
        return client.CoreV1Api(self.api_client)

    @property
    def apps(self):
        from kubernetes import client
        return client.AppsV1Api(self.api_client)

    def _plain(self, obj) -> dict:
        """A typed client object as the API's own JSON shape (camelCase keys)."""
        return self.api_client.sanitize_for_serialization(obj)

    def _resource(self, api_version: str, kind: str):
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            # Discovery does not list the kind: for a custom resource, its CRD is not installed.
            raise ClusterError(f"The cluster at {self.host} has no API for {kind} ({api_version}): nothing "
                               "there defines that kind.",
                               f"Install what defines it (`kubectl get crd` lists the custom kinds; {kind} "
                               "comes with its operator's CRDs, e.g. the Prometheus operator for PodMonitor "
                               "and PrometheusRule, KEDA for ScaledObject), or leave that part out.") from None
        except Exception as exc:  # noqa: BLE001
            raise explain(exc, f"find the API for {kind} ({api_version})", self.host) from None

    def call(self, action: str, fn: Callable, *args, tolerate: dict | None = None, **kwargs):
        """Run one client call, turning any failure into a ClusterError about ``action``.

        ``tolerate`` maps the API statuses that are an answer here, not a failure,
        to what to return instead (``{404: None}``: absent).
        """
        kwargs.setdefault("_request_timeout", self.request_timeout_s)
        try:
            return fn(*args, **kwargs)
        except CourseError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is explained
            status = getattr(exc, "status", None)    # an ApiException's HTTP status
            if tolerate and status in tolerate:
                return tolerate[status]
            raise explain(exc, action, self.host) from None

    # -- verbs -------------------------------------------------------------
    def apply(self, objects: dict | Iterable[dict]) -> list[ObjectRef]:
        """Server-side apply each object (idempotent) and remember it for cleanup."""
        if isinstance(objects, dict):
            objects = [objects]
        refs = []
        for obj in objects:
            ref = ObjectRef.of(obj)
            resource = self._resource(ref.api_version, ref.kind)
            self.call(f"apply {ref}", resource.server_side_apply, body=obj, name=ref.name,
                      namespace=ref.namespace, field_manager=FIELD_MANAGER, force_conflicts=True)
            if ref not in self.applied:
                self.applied.append(ref)
            refs.append(ref)
        return refs

    def get(self, ref: ObjectRef) -> dict | None:
        """The object as a plain dict, or None if it does not exist."""
        resource = self._resource(ref.api_version, ref.kind)
        found = self.call(f"read {ref}", resource.get, name=ref.name, namespace=ref.namespace, tolerate={404: None})
        return None if found is None else found.to_dict()

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None, field_selector: str | None = None) -> list[dict]:
        """Objects of one kind (in ``namespace``, or everywhere), filtered by the API server's selectors."""
        resource = self._resource(api_version, kind)
        result = self.call(f"list {kind} in {namespace or 'the cluster'}", resource.get,
                           namespace=namespace, label_selector=label_selector, field_selector=field_selector)
        return [item.to_dict() for item in result.items]

    def patch(self, ref: ObjectRef, patch: list | dict, patch_type: str = "json") -> dict:
        """A JSON patch (RFC 6902, a list of operations) or a merge patch (RFC 7386) of one object."""
        if patch_type not in PATCH_TYPES:
            raise CourseError(f"Unknown patch type {patch_type!r}.", f"Use one of {', '.join(PATCH_TYPES)}.")
        resource = self._resource(ref.api_version, ref.kind)
        result = self.call(f"patch {ref}", resource.patch, body=patch, name=ref.name, namespace=ref.namespace,
                           content_type=PATCH_TYPES[patch_type])
        return result.to_dict()

    def delete(self, ref: ObjectRef) -> bool:
        """Delete one object; False when it was already gone. Refuses a PersistentVolume, always."""
        if ref.kind == NEVER_DELETED:
            raise refuse_volume_delete(str(ref))
        resource = self._resource(ref.api_version, ref.kind)
        gone = self.call(f"delete {ref}", resource.delete, name=ref.name, namespace=ref.namespace,
                         tolerate={404: False})
        return gone is not False

    def events(self, ref: ObjectRef) -> list[dict]:
        """Events about one object, oldest first (what `kubectl describe` shows at the end)."""
        found = self.list("v1", "Event", namespace=ref.namespace or "default",
                          field_selector=f"involvedObject.kind={ref.kind},involvedObject.name={ref.name}")
        return sorted(found, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")

    def wait_for(self, ref: ObjectRef, condition: Callable[[dict | None], tuple[bool, str]],
                 timeout_s: float = 120.0, interval_s: float = 2.0,
                 progress: Callable[[float, str], None] | None = None) -> dict | None:
        """Poll ``ref`` until ``condition(obj)`` returns ``(True, status)``; return the object.

        ``condition`` also returns a one-line status shown through ``progress``
        (elapsed seconds, status). Raises ClusterError on timeout, with the last
        status and the object's latest events.
        """
        seen: dict = {}

        def look():
            seen["obj"] = self.get(ref)
            return condition(seen["obj"])

        def timed_out(status: str, elapsed: float) -> ClusterError:
            recent = "; ".join(f"{e.get('reason')}: {e.get('message')}" for e in self.events(ref)[-3:])
            return ClusterError(f"{ref} was not ready after {timeout_s:.0f} s (last status: {status}). "
                                f"Recent events: {recent or 'none'}",
                                "See the troubleshooting chapter for this status, or `kubectl describe` the object.")

        wait_until(look, timeout_s=timeout_s, interval_s=interval_s, progress=progress, on_timeout=timed_out)
        return seen["obj"]

    def cleanup(self, keep_kinds: Iterable[str] = DEFAULT_KEEP_KINDS, dry_run: bool = False) -> list[str]:
        """Delete what this session applied, newest first, except ``keep_kinds`` and any PersistentVolume.

        Only objects that still carry the course's label are deleted. Returns
        one line per object saying what was (or would be) done.
        """
        keep = set(keep_kinds) | {NEVER_DELETED}
        report = []
        for ref in reversed(self.applied):
            if ref.kind in keep:
                why = KEEP_REASONS.get(ref.kind, "you asked cleanup to keep this kind")
                report.append(f"kept {ref} ({why})")
                continue
            live = self.get(ref)
            if live is None:
                report.append(f"{ref} is already gone")
                continue
            labels = (live.get("metadata") or {}).get("labels") or {}
            if labels.get(COURSE_LABEL[0]) != COURSE_LABEL[1]:
                report.append(f"kept {ref}: it lacks the course label, so the course did not create it")
                continue
            if dry_run:
                report.append(f"would delete {ref}")
                continue
            report.append(f"deleted {ref}" if self.delete(ref) else f"{ref} is already gone")
        if not dry_run:
            self.applied = [r for r in self.applied if r.kind in keep]
        return report

    # -- Pods of a Deployment (the Deployment chapter) -----------------------
    def pods(self, namespace: str, label_selector: str | None = None) -> list[dict]:
        """Pods in ``namespace`` (oldest first), as plain dicts shaped like the API's JSON."""
        result = self.call(f"list Pods in {namespace}", self.core.list_namespaced_pod, namespace,
                           label_selector=label_selector or "")
        items = [self._plain(p) for p in result.items]
        return sorted(items, key=lambda p: p["metadata"].get("creationTimestamp") or "")

    def pods_of(self, deployment: dict) -> list[dict]:
        """The Pods a Deployment selects, oldest first (the API server filters by its selector)."""
        ns = deployment["metadata"].get("namespace") or system().namespace
        return self.pods(ns, selector_of(deployment))

    def replicasets_of(self, deployment: dict) -> list[dict]:
        """The Deployment's ReplicaSets (one per Pod-template revision), oldest first."""
        ns = deployment["metadata"].get("namespace") or system().namespace
        name = deployment["metadata"]["name"]
        result = self.call(f"list ReplicaSets in {ns}", self.apps.list_namespaced_replica_set, ns,
                           label_selector=selector_of(deployment))
        items = [self._plain(r) for r in result.items]
        mine = [r for r in items if any(o.get("kind") == "Deployment" and o.get("name") == name
                                        for o in r["metadata"].get("ownerReferences") or [])]
        return sorted(mine, key=lambda r: r["metadata"].get("creationTimestamp") or "")

    def pod_events(self, pod: dict) -> list[dict]:
        """Events about one Pod, oldest first (what `kubectl describe pod` lists)."""
        name, namespace = _pod_name(pod, None)
        return self.events(ObjectRef("v1", "Pod", name, namespace))

    def logs(self, pod: dict | str, namespace: str | None = None, container: str | None = None,
             tail: int = 20, previous: bool = False) -> str:
        """The last ``tail`` log lines of a container ('' if it has none yet)."""
        name, namespace = _pod_name(pod, namespace)
        # 400: the container has not started (or has no previous run): no log yet, not an error.
        return self.call(f"read the log of Pod {namespace}/{name}", self.core.read_namespaced_pod_log, name,
                         namespace, container=container or system().container, tail_lines=tail, previous=previous,
                         tolerate={400: ""})

    def delete_pod(self, pod: dict | str, namespace: str | None = None) -> str:
        """Delete one Pod (its ReplicaSet creates a replacement). Returns the deleted name."""
        name, namespace = _pod_name(pod, namespace)
        self.delete(ObjectRef("v1", "Pod", name, namespace))
        return name


def _pod_name(pod: dict | str, namespace: str | None) -> tuple[str, str]:
    """``(name, namespace)`` of a Pod given as a dict or a name (the course's namespace by default)."""
    if isinstance(pod, str):
        return pod, namespace or system().namespace
    return pod["metadata"]["name"], pod["metadata"].get("namespace") or namespace or system().namespace
