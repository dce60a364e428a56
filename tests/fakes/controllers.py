"""Stand-ins for the controllers and the kubelet, so a lab's waits end as on a healthy cluster.

Run after every write when the fake API server is started with
``controllers=True``. Each does, at once, what its real counterpart does in
seconds (https://kubernetes.io/docs/concepts/architecture/controller/):

* the PersistentVolume controller binds a claim to the volume it names
  (``spec.volumeName``) or that names it (``spec.claimRef``); a bound volume whose
  claim is gone becomes ``Released`` (Retain), one whose ``claimRef`` has no uid
  and no claim is ``Available``
  (https://kubernetes.io/docs/concepts/storage/persistent-volumes/#lifecycle-of-a-volume-and-claim);
* the Deployment controller keeps one ReplicaSet per Pod template (label
  ``pod-template-hash``) and scales the others to zero; the ReplicaSet
  controller keeps ``replicas`` Pods; the garbage collector deletes what lost its
  owner (``ownerReferences``);
* the kubelet marks each Pod Running and Ready at once, with the events ``kubectl
  describe`` lists (Scheduled, Pulled, Created, Started);
* the EndpointSlice controller lists the Pods a Service selects
  (label ``kubernetes.io/service-name``), resolving a named ``targetPort``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import secrets

from tests.fakes.resources import by_kind
from tests.fakes.store import Store

NODE = "gpu-box"
SLICE_MANAGER = "endpointslice-controller.k8s.io"


def _r(kind: str, api_version: str = "v1"):
    return by_kind(api_version, kind)


def _key(obj: dict) -> tuple:
    meta = obj["metadata"]
    return meta.get("namespace"), meta["name"]


def _owned_by(obj: dict, owner: dict) -> bool:
    return any(ref.get("uid") == owner["metadata"]["uid"] for ref in obj["metadata"].get("ownerReferences") or [])


def _owner_ref(owner: dict) -> dict:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def bind_volumes(store: Store) -> None:
    pv_r, pvc_r = _r("PersistentVolume"), _r("PersistentVolumeClaim")
    claims = {_key(c): c for c in store.of_kind("PersistentVolumeClaim")}
    for pv in store.of_kind("PersistentVolume"):
        ref = pv["spec"].get("claimRef")
        claim = claims.get((ref.get("namespace"), ref.get("name"))) if ref else None
        if claim is None:
            for c in claims.values():   # a claim that names this volume
                if c["spec"].get("volumeName") == pv["metadata"]["name"]:
                    claim, ref = c, None
        if claim is not None and (ref is None or ref.get("uid") in (None, claim["metadata"]["uid"])):
            new_ref = {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": claim["metadata"]["namespace"],
                       "name": claim["metadata"]["name"], "uid": claim["metadata"]["uid"]}
            if ref != new_ref:
                store.controller_update(pv_r, None, pv["metadata"]["name"],
                                        lambda o: o["spec"].__setitem__("claimRef", new_ref))
            store.update_status(pv_r, None, pv["metadata"]["name"], {"phase": "Bound"})
            if claim["spec"].get("volumeName") != pv["metadata"]["name"]:
                store.controller_update(pvc_r, *_key(claim),
                                        lambda o: o["spec"].__setitem__("volumeName", pv["metadata"]["name"]))
            store.update_status(pvc_r, *_key(claim), {
                "phase": "Bound", "accessModes": pv["spec"].get("accessModes", []),
                "capacity": pv["spec"].get("capacity", {})})
        elif ref and ref.get("uid"):
            store.update_status(pv_r, None, pv["metadata"]["name"], {"phase": "Released"})
        else:
            store.update_status(pv_r, None, pv["metadata"]["name"], {"phase": "Available"})
    bound = {(p["spec"].get("claimRef") or {}).get("uid") for p in store.of_kind("PersistentVolume")}
    for claim in claims.values():
        if claim["metadata"]["uid"] not in bound:
            store.update_status(pvc_r, *_key(claim), {"phase": "Pending"})


def _template_hash(template: dict) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def run_deployments(store: Store) -> None:
    rs_r, dep_r = _r("ReplicaSet", "apps/v1"), _r("Deployment", "apps/v1")
    for dep in store.of_kind("Deployment"):
        ns, name = _key(dep)
        digest = _template_hash(dep["spec"]["template"])
        wanted = f"{name}-{digest}"
        for rs in store.of_kind("ReplicaSet"):
            if _owned_by(rs, dep) and rs["metadata"]["name"] != wanted and rs["spec"].get("replicas"):
                store.controller_update(rs_r, ns, rs["metadata"]["name"],
                                        lambda o: o["spec"].__setitem__("replicas", 0))
        replicas = dep["spec"].get("replicas", 1)
        template = copy.deepcopy(dep["spec"]["template"])
        template["metadata"].setdefault("labels", {})["pod-template-hash"] = digest
        if store.get(rs_r, ns, wanted) is None:
            selector = copy.deepcopy(dep["spec"]["selector"])
            selector.setdefault("matchLabels", {})["pod-template-hash"] = digest
            store.create(rs_r, ns, {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
                "name": wanted, "namespace": ns, "labels": template["metadata"]["labels"],
                "ownerReferences": [_owner_ref(dep)]},
                "spec": {"replicas": replicas, "selector": selector, "template": template}},
                manager="kube-controller-manager")
        elif store.get(rs_r, ns, wanted)["spec"].get("replicas") != replicas:
            store.controller_update(rs_r, ns, wanted, lambda o: o["spec"].__setitem__("replicas", replicas))
        ready = sum(1 for p in store.of_kind("Pod") if _is_ready(p)
                    and p["metadata"].get("labels", {}).get("pod-template-hash") == digest
                    and p["metadata"].get("namespace") == ns)
        store.update_status(dep_r, ns, name, {
            "observedGeneration": dep["metadata"]["generation"], "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": ready, "availableReplicas": ready,
            "conditions": [{"type": "Available", "status": "True" if ready >= replicas else "False",
                            "reason": "MinimumReplicasAvailable"}]})


def _is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def run_replicasets(store: Store) -> None:
    pod_r, rs_r = _r("Pod"), _r("ReplicaSet", "apps/v1")
    for rs in store.of_kind("ReplicaSet"):
        ns, name = _key(rs)
        pods = [p for p in store.of_kind("Pod") if _owned_by(p, rs)]
        want = rs["spec"].get("replicas", 1)
        for extra in pods[want:]:
            store.delete(pod_r, ns, extra["metadata"]["name"])
        for _ in range(want - len(pods)):
            template = copy.deepcopy(rs["spec"]["template"])
            pod_name = f"{name}-{secrets.token_hex(3)[:5]}"
            store.create(pod_r, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {
                **template.get("metadata", {}), "name": pod_name, "namespace": ns,
                "ownerReferences": [_owner_ref(rs)]},
                "spec": {**template["spec"], "nodeName": NODE}}, manager="kube-controller-manager")
        store.update_status(rs_r, ns, name, {"replicas": min(want, len(pods)) if pods else 0,
                                             "readyReplicas": sum(1 for p in pods[:want] if _is_ready(p))})


def run_kubelet(store: Store, events: "EventRecorder") -> None:
    pod_r = _r("Pod")
    for index, pod in enumerate(store.of_kind("Pod")):
        if _is_ready(pod):
            continue
        ns, name = _key(pod)
        containers = pod["spec"].get("containers", [])
        started = pod["metadata"]["creationTimestamp"]
        store.update_status(pod_r, ns, name, {
            "phase": "Running", "podIP": f"10.42.0.{10 + index}", "hostIP": "192.168.1.10", "startTime": started,
            "conditions": [{"type": t, "status": "True"} for t in
                           ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True,
                                   "started": True, "restartCount": 0,
                                   "state": {"running": {"startedAt": started}}} for c in containers]})
        for reason, message in (("Scheduled", f"Successfully assigned {ns}/{name} to {NODE}"),
                                ("Pulled", "Container image is already present on machine"),
                                ("Created", "Created container"), ("Started", "Started container")):
            events.record(pod, reason, message)


def run_endpoint_slices(store: Store) -> None:
    slice_r = _r("EndpointSlice", "discovery.k8s.io/v1")
    for svc in store.of_kind("Service"):
        ns, name = _key(svc)
        selector = svc["spec"].get("selector") or {}
        pods = [p for p in store.of_kind("Pod") if p["metadata"].get("namespace") == ns
                and _selects(selector, p["metadata"].get("labels") or {})]
        ports = []
        for sp in svc["spec"].get("ports", []):
            target = sp.get("targetPort", sp["port"])
            if isinstance(target, str):   # a named port: the container port of that name
                named = [cp["containerPort"] for p in pods for c in p["spec"].get("containers", [])
                         for cp in c.get("ports", []) if cp.get("name") == target]
                target = named[0] if named else None
            if target is not None:
                ports.append({"name": sp.get("name", ""), "port": target, "protocol": sp.get("protocol", "TCP")})
        slice_obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {
            "name": f"{name}-fake1", "namespace": ns, "ownerReferences": [_owner_ref(svc)],
            "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER}},
            "addressType": "IPv4", "ports": ports,
            "endpoints": [{"addresses": [(p.get("status") or {}).get("podIP", "10.42.0.1")],
                           "conditions": {"ready": _is_ready(p), "serving": _is_ready(p), "terminating": False},
                           "nodeName": NODE,
                           "targetRef": {"kind": "Pod", "name": p["metadata"]["name"], "namespace": ns,
                                         "uid": p["metadata"]["uid"]}} for p in pods]}
        current = store.get(slice_r, ns, slice_obj["metadata"]["name"])
        if current is None:
            store.create(slice_r, ns, slice_obj, manager=SLICE_MANAGER)
        elif (current["endpoints"], current["ports"]) != (slice_obj["endpoints"], slice_obj["ports"]):
            store.controller_update(slice_r, ns, slice_obj["metadata"]["name"],
                                    lambda o: o.update(endpoints=slice_obj["endpoints"], ports=ports))


def collect_garbage(store: Store) -> None:
    uids = {o["metadata"]["uid"] for (_, _, _), o in list(store.objects.items())}
    for (resource, ns, name), obj in list(store.objects.items()):
        refs = obj["metadata"].get("ownerReferences") or []
        if refs and not any(r.get("uid") in uids for r in refs):
            store.delete(resource, ns, name)


class EventRecorder:
    """Events as the kubelet records them (core/v1 Event, ``involvedObject`` naming the Pod)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.count = 0

    def record(self, obj: dict, reason: str, message: str, kind: str = "Normal") -> None:
        self.count += 1
        ns, name = _key(obj)
        if ns is None or self.store.get(_r("Namespace"), None, ns) is None:
            return
        self.store.create(_r("Event"), ns, {"apiVersion": "v1", "kind": "Event", "metadata": {
            "name": f"{name}.{self.count:016x}", "namespace": ns},
            "involvedObject": {"kind": obj["kind"], "name": name, "namespace": ns, "uid": obj["metadata"]["uid"],
                               "apiVersion": obj["apiVersion"]},
            "reason": reason, "message": message, "type": kind, "count": 1,
            "firstTimestamp": obj["metadata"]["creationTimestamp"],
            "lastTimestamp": obj["metadata"]["creationTimestamp"],
            "source": {"component": "kubelet", "host": NODE}}, manager="kubelet")


def reconcile(store: Store, events: EventRecorder, rounds: int = 6) -> None:
    """Run every stand-in until nothing changes (bounded: a few rounds settle any chain here)."""
    for _ in range(rounds):
        before = store.revision
        bind_volumes(store)
        collect_garbage(store)
        run_deployments(store)
        run_replicasets(store)
        run_kubelet(store, events)
        run_endpoint_slices(store)
        if store.revision == before:
            return
