"""Small PersistentVolume and claim dicts shaped like the course's, for the storage tests."""
from __future__ import annotations


def pv(**over) -> dict:
    """A free hostPath volume like the course's, without claimRef unless given."""
    obj = {"apiVersion": "v1", "kind": "PersistentVolume",
           "metadata": {"name": "model-storage", "labels": {"app": "llm", "tier": "weights"}},
           "spec": {"capacity": {"storage": "200Gi"}, "accessModes": ["ReadOnlyMany"],
                    "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                    "hostPath": {"path": "/models", "type": "Directory"}}}
    obj["spec"].update(over)
    return obj


def pvc(**over) -> dict:
    obj = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": "model-storage-claim", "namespace": "ai-platform"},
           "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "",
                    "resources": {"requests": {"storage": "200Gi"}}}}
    for k, v in over.items():
        if v is None:
            obj["spec"].pop(k, None)
        elif k == "storage":
            obj["spec"]["resources"]["requests"]["storage"] = v
        else:
            obj["spec"][k] = v
    return obj


REF = {"namespace": "ai-platform", "name": "model-storage-claim"}
