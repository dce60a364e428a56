"""The system's names and numbers, read from manifest dicts (llmserve.core.names).

Each rule below follows the Kubernetes or vLLM default it cites; the figure
(tests/system/test_figure.py) and every chapter print what these functions read.
"""
from __future__ import annotations

import copy

import pytest

from llmserve.core import names
from llmserve.core.errors import ManifestError


def _objects() -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"}},
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
         "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadOnlyMany"],
                  "hostPath": {"path": "/srv/weights"}, "persistentVolumeReclaimPolicy": "Retain"}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "claim1", "namespace": "ns1"},
         "spec": {"accessModes": ["ReadOnlyMany"], "volumeName": "pv1",
                  "resources": {"requests": {"storage": "10Gi"}}}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dep1", "namespace": "ns1"},
         "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "template": {"spec": {
             "containers": [{"name": "engine", "image": "vllm/vllm-openai:v0.32.0",
                             "args": ["--model", "/weights/m1", "--port=8000"],
                             "ports": [{"name": "http", "containerPort": 8000}],
                             "volumeMounts": [{"name": "w", "mountPath": "/weights", "readOnly": True}]}],
             "volumes": [{"name": "w", "persistentVolumeClaim": {"claimName": "claim1", "readOnly": True}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc1", "namespace": "ns1"},
         "spec": {"ports": [{"port": 80, "targetPort": "http"}]}},
    ]


def test_dns_name_follows_the_kubernetes_dns_schema():
    # https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/ :
    # a normal Service gets an A record <service>.<namespace>.svc.<cluster-domain>.
    n = names.names_from_manifests(_objects())
    assert n.dns_name == "svc1.ns1.svc.cluster.local"


def test_host_directory_is_the_hostpath_plus_the_model_path_below_the_mount():
    # https://kubernetes.io/docs/concepts/storage/volumes/#hostpath : the container sees the
    # host directory at the mountPath, so /weights/m1 inside is /srv/weights/m1 on the node.
    n = names.names_from_manifests(_objects())
    assert n.model_path == "/weights/m1"           # "--model VALUE" form is read too
    assert n.host_model_dir == "/srv/weights/m1"
    assert n.models_read_only is True


def test_service_type_defaults_to_clusterip_and_strategy_to_rollingupdate():
    # Service spec.type defaults to ClusterIP; Deployment spec.strategy.type to RollingUpdate
    # (https://kubernetes.io/docs/concepts/services-networking/service/ ,
    #  https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#strategy).
    objs = _objects()
    del objs[3]["spec"]["strategy"]
    n = names.names_from_manifests(objs)
    assert n.service_type == "ClusterIP"
    assert n.strategy == "RollingUpdate"


def test_gpu_memory_utilization_defaults_to_vllm_0_32():
    # vllm/config/cache.py in vLLM 0.32.0: gpu_memory_utilization Field(default=0.92).
    n = names.names_from_manifests(_objects())
    assert n.gpu_memory_utilization == 0.92
    objs = _objects()
    objs[3]["spec"]["template"]["spec"]["containers"][0]["args"].append("--gpu-memory-utilization=0.5")
    assert names.names_from_manifests(objs).gpu_memory_utilization == 0.5


def test_missing_model_flag_is_a_course_error_naming_the_fix():
    objs = _objects()
    objs[3]["spec"]["template"]["spec"]["containers"][0]["args"] = ["--port=8000"]
    with pytest.raises(ManifestError, match="--model") as err:
        names.names_from_manifests(objs)
    assert "Deployment's args" in err.value.fix


def test_claim_not_mounted_is_a_course_error():
    objs = _objects()
    objs[3]["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] = "other"
    with pytest.raises(ManifestError, match="claim1"):
        names.names_from_manifests(objs)


def test_two_services_is_a_course_error():
    objs = _objects() + [copy.deepcopy(_objects()[4])]
    with pytest.raises(ManifestError, match="exactly one Service"):
        names.names_from_manifests(objs)
