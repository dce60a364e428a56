"""Talking to a real Kubernetes cluster, with every failure explained.

Used by every lab notebook in live mode (storage, Deployment, Service, the
capstone). All calls go through :class:`Cluster`; every exception the
kubernetes client or the network raises is turned into a
:class:`~llmserve.core.errors.ClusterError` that names the fix.

Pods and their kin: :meth:`Cluster.pods_of`, :meth:`Cluster.replicasets_of`,
:meth:`Cluster.pod_events`, :meth:`Cluster.logs`, :meth:`Cluster.delete_pod`.
They come back as plain dicts in the API's own JSON shape (camelCase keys), the
same shape ``kubectl get pod -o json`` prints; the Deployment chapter's rollout
diagnosis (:mod:`llmserve.deployment.live`) reads them.

Retries: the probe in :func:`probe` makes one attempt (an offline laptop learns
in seconds); a :class:`Cluster` retries a refused connection twice and never
repeats a request that timed out. Both are set before the client's connection
pool is built (setting ``configuration.retries`` afterwards has no effect).

Safety rules:
* :meth:`Cluster.apply` uses server-side apply, so re-running a cell is safe.
* :meth:`Cluster.cleanup` deletes only objects this session applied and that
  carry the course's label, and by default keeps PersistentVolumes and the
  namespace. It never touches the data on a volume: the course's PV has
  ``persistentVolumeReclaimPolicy: Retain`` and a hostPath is never deleted by
  Kubernetes anyway.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from pathlib import Path

from llmserve.core.objects import selector_of
from llmserve.core.errors import ClusterError

FIELD_MANAGER = "llmserve-course"
COURSE_LABEL = ("app.kubernetes.io/part-of", "vllm-course")
DEFAULT_KEEP_KINDS = ("PersistentVolume", "Namespace")


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


def explain(exc: BaseException, action: str, host: str = "the API server") -> ClusterError:
    """Turn any exception from the kubernetes client into a ClusterError naming the fix."""
    if isinstance(exc, ClusterError):
        return exc
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    import urllib3.exceptions as u3

    if isinstance(exc, ConfigException):
        return ClusterError(f"The kubeconfig could not be used while trying to {action}: {exc}",
                            f"Check {kubeconfig_path()} (`kubectl config view`) or set KUBECONFIG to a valid file.")
    if isinstance(exc, ApiException):
        reason = _api_message(exc)
        if exc.status == 401:
            return ClusterError(f"The cluster rejected your credentials while trying to {action} (401 Unauthorized).",
                                "Your token or certificate has expired or is wrong: refresh the kubeconfig "
                                "(for k3s, copy /etc/rancher/k3s/k3s.yaml again).")
        if exc.status == 403:
            return ClusterError(f"Forbidden by RBAC: could not {action}. The API server said: {reason}",
                                "Ask the cluster admin for a Role (or ClusterRole for PersistentVolumes) that "
                                "grants these verbs, or check with `kubectl auth can-i --list -n ai-platform`.")
        if exc.status == 404 and _api_details(exc).get("kind") == "namespaces":
            name = _api_details(exc).get("name", "ai-platform")
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
                                "Fix the manifest field it names; validate offline with llmserve.world.manifests.validate().")
        return ClusterError(f"The API server answered {exc.status} while trying to {action}: {reason}",
                            "Read the message above; `kubectl get events -n ai-platform` may say more.")
    # urllib3 wraps the real cause in MaxRetryError once its retries are spent.
    cause = exc.reason if isinstance(exc, u3.MaxRetryError) and exc.reason is not None else exc
    # NewConnectionError (refused, no route, bad name) subclasses ConnectTimeoutError in urllib3 2.
    if isinstance(cause, u3.NewConnectionError):
        return ClusterError(f"Could not reach {host} while trying to {action} ({_short(cause)}).",
                            "Is the cluster running? Check `kubectl cluster-info`, the server address in the "
                            "kubeconfig, and any VPN or port-forward it needs.")
    if isinstance(cause, (u3.ReadTimeoutError, u3.ConnectTimeoutError, TimeoutError)):
        return ClusterError(f"{host} did not answer in time while trying to {action} ({_short(cause)}).",
                            "The API server is overloaded or the network drops packets: retry, check "
                            "`kubectl get --raw /readyz`, or raise the request timeout (Cluster(request_timeout_s=…)).")
    if isinstance(cause, u3.SSLError):
        return ClusterError(f"The TLS handshake with {host} failed while trying to {action} ({_short(cause)}).",
                            "The kubeconfig's certificate-authority-data does not match the server: copy the "
                            "kubeconfig from the cluster again.")
    if isinstance(cause, (u3.NewConnectionError, ConnectionError, u3.ProtocolError, OSError)) \
            or isinstance(exc, u3.MaxRetryError):
        return ClusterError(f"Could not reach {host} while trying to {action} ({_short(cause)}).",
                            "Is the cluster running? Check `kubectl cluster-info`, the server address in the "
                            "kubeconfig, and any VPN or port-forward it needs.")
    return ClusterError(f"Unexpected failure while trying to {action}: {type(exc).__name__}: {exc}",
                        "Check the cluster with `kubectl cluster-info`; if it is healthy, report this as a course bug.")


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


def _load_api_client(context: str | None, retries=None):
    """An ApiClient for ``context`` (or the current one), with ``retries`` set before its pool is built."""
    from kubernetes import client, config

    cfg = client.Configuration()
    path = kubeconfig_path()
    if not path.exists():
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)
            cfg.retries = retries
            return client.ApiClient(cfg), "in-cluster"
        raise ClusterError(f"No kubeconfig at {path}.",
                           "Copy your cluster's kubeconfig there or set KUBECONFIG "
                           "(k3s: /etc/rancher/k3s/k3s.yaml; kind: `kind get kubeconfig`).")
    try:
        contexts, current = config.list_kube_config_contexts(config_file=str(path))
    except Exception as exc:  # noqa: BLE001 - a file that is not a kubeconfig fails in many ways
        raise ClusterError(f"{path} is not a usable kubeconfig: {_short(exc)}",
                           "Check the file with `kubectl config view`, or point KUBECONFIG at the right file.") from None
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
    return client.ApiClient(cfg), wanted


def probe(timeout_s: float = 3.0, context: str | None = None) -> dict:
    """Ask the API server for its version; raise ClusterError if that fails."""
    # No retries: an offline laptop should learn in seconds, not minutes.
    api_client, ctx = _load_api_client(context, retries=0)
    host = api_client.configuration.host
    from kubernetes import client
    try:
        version = client.VersionApi(api_client).get_code(_request_timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - every failure is explained
        raise explain(exc, "read the cluster version", host) from None
    return {"host": host, "version": version.git_version, "context": ctx}


class Cluster:
    """A connection to one cluster context, with the course's safe verbs."""

    def __init__(self, context: str | None = None, request_timeout_s: float = 15.0) -> None:
        # Two quick retries for a refused connection; none for a read timeout
        # (the request may have been done: the caller decides).
        import urllib3
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

    def _resource(self, api_version: str, kind: str):
        try:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except Exception as exc:  # noqa: BLE001
            raise explain(exc, f"find the API for {kind} ({api_version})", self.host) from None

    def call(self, action: str, fn: Callable, *args, **kwargs):
        """Run one client call, turning any failure into a ClusterError about ``action``."""
        kwargs.setdefault("_request_timeout", self.request_timeout_s)
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
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
        from kubernetes.client.exceptions import ApiException
        resource = self._resource(ref.api_version, ref.kind)
        try:
            return resource.get(name=ref.name, namespace=ref.namespace,
                                _request_timeout=self.request_timeout_s).to_dict()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise explain(exc, f"read {ref}", self.host) from None
        except Exception as exc:  # noqa: BLE001
            raise explain(exc, f"read {ref}", self.host) from None

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[dict]:
        resource = self._resource(api_version, kind)
        result = self.call(f"list {kind} in {namespace or 'the cluster'}", resource.get,
                           namespace=namespace, label_selector=label_selector)
        return [item.to_dict() for item in result.items]

    def events(self, ref: ObjectRef) -> list[dict]:
        """Events about one object, oldest first (what `kubectl describe` shows at the end)."""
        namespace = ref.namespace or "default"
        items = self.list("v1", "Event", namespace=namespace)
        mine = [e for e in items if e.get("involvedObject", {}).get("name") == ref.name
                and e.get("involvedObject", {}).get("kind") == ref.kind]
        return sorted(mine, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")

    def wait_for(self, ref: ObjectRef, condition: Callable[[dict | None], tuple[bool, str]],
                 timeout_s: float = 120.0, interval_s: float = 2.0,
                 progress: Callable[[float, str], None] | None = None) -> dict | None:
        """Poll ``ref`` until ``condition(obj)`` returns ``(True, status)``.

        ``condition`` also returns a one-line status shown through ``progress``
        (elapsed seconds, status). Raises ClusterError on timeout, with the last
        status and the object's latest events.
        """
        start = time.monotonic()
        status = "not checked yet"
        while True:
            obj = self.get(ref)
            done, status = condition(obj)
            elapsed = time.monotonic() - start
            if progress:
                progress(elapsed, status)
            if done:
                return obj
            if elapsed >= timeout_s:
                recent = "; ".join(f"{e.get('reason')}: {e.get('message')}" for e in self.events(ref)[-3:])
                raise ClusterError(f"{ref} was not ready after {timeout_s:.0f} s (last status: {status}). "
                                   f"Recent events: {recent or 'none'}",
                                   "See the troubleshooting chapter for this status, or `kubectl describe` the object.")
            time.sleep(interval_s)

    def cleanup(self, keep_kinds: Iterable[str] = DEFAULT_KEEP_KINDS, dry_run: bool = False) -> list[str]:
        """Delete what this session applied, newest first, except ``keep_kinds``.

        Only objects that still carry the course's label are deleted. Returns
        one line per object saying what was (or would be) done.
        """
        from kubernetes.client.exceptions import ApiException
        keep = set(keep_kinds)
        report = []
        for ref in reversed(self.applied):
            if ref.kind in keep:
                report.append(f"kept {ref} (never deleted by cleanup: it holds or frames the model data)")
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
            resource = self._resource(ref.api_version, ref.kind)
            try:
                resource.delete(name=ref.name, namespace=ref.namespace, _request_timeout=self.request_timeout_s)
                report.append(f"deleted {ref}")
            except ApiException as exc:
                if exc.status != 404:
                    raise explain(exc, f"delete {ref}", self.host) from None
                report.append(f"{ref} is already gone")
        self.applied = [r for r in self.applied if r.kind in keep]
        return report

    # -- Pods of a Deployment (the Deployment chapter) -----------------------
    @property
    def core(self):
        from kubernetes import client
        return client.CoreV1Api(self.api_client)

    @property
    def apps(self):
        from kubernetes import client
        return client.AppsV1Api(self.api_client)

    def _plain(self, obj) -> dict:
        """A typed client object as the API's own JSON shape (camelCase keys)."""
        return self.api_client.sanitize_for_serialization(obj)

    def pods(self, namespace: str, label_selector: str | None = None) -> list[dict]:
        """Pods in ``namespace`` (oldest first), as plain dicts shaped like the API's JSON."""
        result = self.call(f"list Pods in {namespace}", self.core.list_namespaced_pod, namespace,
                           label_selector=label_selector or "")
        items = [self._plain(p) for p in result.items]
        return sorted(items, key=lambda p: p["metadata"].get("creationTimestamp") or "")

    def pods_of(self, deployment: dict) -> list[dict]:
        """The Pods a Deployment owns (through its ReplicaSets), oldest first."""
        ns = deployment["metadata"].get("namespace", "default")
        return self.pods(ns, selector_of(deployment))

    def replicasets_of(self, deployment: dict) -> list[dict]:
        """The Deployment's ReplicaSets (one per Pod-template revision), oldest first."""
        ns = deployment["metadata"].get("namespace", "default")
        name = deployment["metadata"]["name"]
        result = self.call(f"list ReplicaSets in {ns}", self.apps.list_namespaced_replica_set, ns,
                           label_selector=selector_of(deployment))
        items = [self._plain(r) for r in result.items]
        mine = [r for r in items if any(o.get("kind") == "Deployment" and o.get("name") == name
                                        for o in r["metadata"].get("ownerReferences") or [])]
        return sorted(mine, key=lambda r: r["metadata"].get("creationTimestamp") or "")

    def pod_events(self, pod: dict) -> list[dict]:
        """Events about one Pod, oldest first (what `kubectl describe pod` lists)."""
        meta = pod["metadata"]
        result = self.call(f"list events of Pod {meta['name']}", self.core.list_namespaced_event,
                           meta.get("namespace", "default"),
                           field_selector=f"involvedObject.kind=Pod,involvedObject.name={meta['name']}")
        items = [self._plain(e) for e in result.items]
        return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")

    def logs(self, pod: dict | str, namespace: str = "ai-platform", container: str = "vllm",
             tail: int = 20, previous: bool = False) -> str:
        """The last ``tail`` log lines of a container ('' if it has none yet)."""
        from kubernetes.client.exceptions import ApiException
        name = pod if isinstance(pod, str) else pod["metadata"]["name"]
        if not isinstance(pod, str):
            namespace = pod["metadata"].get("namespace", namespace)
        try:
            return self.core.read_namespaced_pod_log(name, namespace, container=container, tail_lines=tail,
                                                     previous=previous, _request_timeout=self.request_timeout_s)
        except ApiException as exc:
            # 400: the container has not started (or has no previous run) — no log yet, not an error.
            if exc.status == 400:
                return ""
            raise explain(exc, f"read the log of Pod {namespace}/{name}", self.host) from None
        except Exception as exc:  # noqa: BLE001
            raise explain(exc, f"read the log of Pod {namespace}/{name}", self.host) from None

    def delete_pod(self, pod: dict | str, namespace: str = "ai-platform") -> str:
        """Delete one Pod (its ReplicaSet creates a replacement). Returns the deleted name."""
        from kubernetes.client.exceptions import ApiException
        name = pod if isinstance(pod, str) else pod["metadata"]["name"]
        if not isinstance(pod, str):
            namespace = pod["metadata"].get("namespace", namespace)
        try:
            self.core.delete_namespaced_pod(name, namespace, _request_timeout=self.request_timeout_s)
        except ApiException as exc:
            if exc.status != 404:
                raise explain(exc, f"delete Pod {namespace}/{name}", self.host) from None
        except Exception as exc:  # noqa: BLE001
            raise explain(exc, f"delete Pod {namespace}/{name}", self.host) from None
        return name
