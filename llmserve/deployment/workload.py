"""Pure rules of the Deployment chapter: read and change the Deployment manifest, and say the same by hand.

Used by ``notebooks/deployment-lab.ipynb`` (the Pod-spec essentials, the changed argument
that starts a rollout, the ``kubectl`` line printed beside every live cell) and by
``book/deployment.md``. Layer: pure rules (core only, no I/O).
"""
from __future__ import annotations

import copy

from llmserve.core.errors import require
from llmserve.core.names import system
from llmserve.core.objects import name_of, selector_of, vllm_container
from llmserve.deployment.budgets import Probe, shutdown_from_deployment, startup_window_s


def with_arg(deployment: dict, flag: str, value, container: str = "vllm") -> dict:
    """A deep copy of the Deployment with ``--flag=value`` set (replaced in place or appended)."""
    require(isinstance(flag, str) and flag.startswith("--"), f"{flag!r} is not a vLLM option.",
            "Write the option with its dashes, e.g. --max-model-len.")
    new = copy.deepcopy(deployment)
    c = vllm_container(new, container)
    args = list(c.get("args") or [])
    setting = f"{flag}={value}"
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            args[i] = setting
            break
        if a == flag and i + 1 < len(args):
            args[i:i + 2] = [setting]
            break
    else:
        args.append(setting)
    c["args"] = args
    return new


def _probe_row(container: dict, kind: str) -> str:
    if kind not in container:
        return "none"
    p = Probe.from_dict(container[kind])
    path = ((container[kind].get("httpGet") or {}).get("path")) or "(exec/tcp)"
    extra = f", gives up after {startup_window_s(p):.0f} s" if kind == "startupProbe" else ""
    return (f"GET {path} every {p.period_s:g} s, timeout {p.timeout_s:g} s, "
            f"{p.failure_threshold} failures{extra}")


def essentials(deployment: dict) -> list[tuple[str, str]]:
    """The fields of the Pod spec that decide whether vLLM runs, as (field, value) rows."""
    spec = deployment.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    c = vllm_container(deployment)
    res = c.get("resources") or {}
    mounts = {m["name"]: m for m in c.get("volumeMounts") or []}
    rows = [("strategy", (spec.get("strategy") or {}).get("type", "RollingUpdate (default)")),
            ("replicas", str(spec.get("replicas", 1))),
            ("image", f"{c.get('image')} (pull: {c.get('imagePullPolicy', 'default')})"),
            ("args", " ".join(c.get("args") or [])),
            ("requests", ", ".join(f"{k}={v}" for k, v in (res.get("requests") or {}).items())),
            ("limits", ", ".join(f"{k}={v}" for k, v in (res.get("limits") or {}).items()))]
    rows += [(kind, _probe_row(c, kind)) for kind in ("startupProbe", "livenessProbe", "readinessProbe")]
    shutdown = shutdown_from_deployment(deployment)
    rows.append(("shutdown", f"preStop sleep {shutdown['pre_stop_s']} s, then SIGTERM: vLLM drains for up to "
                             f"{shutdown['drain_s']} s (--shutdown-timeout); SIGKILL at "
                             f"{shutdown['grace_s']} s (terminationGracePeriodSeconds)"))
    for v in pod.get("volumes") or []:
        m = mounts.get(v["name"], {})
        source = next((k for k in v if k != "name"), "?")
        detail = v[source] if isinstance(v[source], dict) else {}
        rows.append((f"volume {v['name']}", f"{source} {detail} at {m.get('mountPath', '(not mounted)')}"
                                            f"{' read-only' if m.get('readOnly') else ''}"))
    env = [e["name"] + ("=" + e["value"] if "value" in e else " (from a Secret)") for e in c.get("env") or []]
    rows.append(("env", ", ".join(env)))
    sc = {**(pod.get("securityContext") or {}), **(c.get("securityContext") or {})}
    rows.append(("securityContext", ", ".join(f"{k}={v}" for k, v in sc.items())))
    return rows


def kubectl_commands(deployment: dict) -> dict[str, str]:
    """The ``kubectl`` command that does by hand what each live cell of the lab does.

    Keys: ``secret``, ``apply``, ``rollout``, ``pods``, ``owners``, ``delete``, ``logs``.
    """
    n = system()
    ns = (deployment.get("metadata") or {}).get("namespace", n.namespace)
    name, selector = name_of(deployment), selector_of(deployment)
    return {
        "secret": (f"kubectl create secret generic {n.api_key_secret} -n {ns} "
                   "--from-literal=api-key=\"$(openssl rand -hex 16)\""),
        "apply": "kubectl apply -f manifests/base/vllm-deployment.yaml",
        "rollout": f"kubectl rollout status deployment/{name} -n {ns} --timeout=15m",
        "pods": f"kubectl get pods -n {ns} -l {selector} -w",
        "owners": f"kubectl get replicasets,pods -n {ns} -l {selector}",
        "delete": f"kubectl delete pod -n {ns} -l {selector} --wait=false",
        "logs": f"kubectl logs -n {ns} deploy/{name} -f",
    }
