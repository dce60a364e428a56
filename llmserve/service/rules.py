"""Pure rules of the Service chapter: does the Service reach the vLLM Pods, and what does its name do?

Used by ``book/service.md``, ``notebooks/service-lab.ipynb`` and the selector checker in
:mod:`llmserve.service.panel`. Layer: pure rules (core only, no I/O).

A Service finds its Pods by **labels**, and sends traffic to a **port** of theirs. Both
links fail silently: a Service whose selector matches nothing is accepted by the API
server and simply has no endpoints; a ``targetPort`` name that no container declares is
accepted too. :func:`selector_report` checks both links (and the Deployment's own
selector) from the manifests alone and explains each mismatch with its fix, as a
:class:`~llmserve.core.findings.Report`.

It also answers two questions the chapter asks about a Service's *name*:

* :func:`dns_names`: the names a client can use, and from where each works
  (Kubernetes docs, "DNS for Services and Pods");
* :func:`service_env_vars` / :func:`env_var_findings`: the docker-link-style environment
  variables the kubelet injects into every Pod of the namespace (``{NAME}_SERVICE_HOST``,
  ``{NAME}_PORT`` …), and whether one of them lands on a variable vLLM reads itself, the
  reason the course's Service is not called ``vllm``.

:func:`own_findings` keeps what one Service changes against another (the lab shows each
broken example with only its own problem), and :func:`kubectl_commands` says by hand what
the lab's live cells do.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from llmserve.core.errors import InputError
from llmserve.core.findings import ERROR, OK, WARNING, Finding, Report
from llmserve.core.names import system
from llmserve.core.vllm import CLUSTER_DOMAIN, DEFAULT_PORT

#: vLLM 0.32.0 variables (``vllm/envs.py``, ``environment_variables``) whose names have the
#: shape of a variable Kubernetes injects for some Service (``{NAME}_PORT`` here). A Service
#: called ``vllm`` produces ``VLLM_PORT``; one called ``vllm-dp-master`` produces
#: ``VLLM_DP_MASTER_PORT``. ``tests/service/test_rules.py`` re-derives this list from the
#: installed vLLM.
VLLM_COLLIDABLE_ENV_VARS = frozenset({
    "VLLM_DP_MASTER_PORT",
    "VLLM_EC_SIDE_CHANNEL_PORT",
    "VLLM_MOONCAKE_BOOTSTRAP_PORT",
    "VLLM_NIXL_SIDE_CHANNEL_PORT",
    "VLLM_P2P_SIDE_CHANNEL_PORT",
    "VLLM_PORT",
})

#: The regular expression the list above was filtered with: every name shape the kubelet
#: produces (pkg/kubelet/envvars/envvars.go).
INJECTED_NAME_SHAPE = re.compile(
    r"(_SERVICE_HOST|_SERVICE_PORT(_[A-Z0-9_]+)?|_PORT|_PORT_[0-9]+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)$")

#: A report's headline when nothing stops traffic.
REACHES = "traffic reaches the Pods"


# -- reading the objects ------------------------------------------------------
def describe(obj: dict) -> str:
    """``Kind namespace/name`` of a manifest."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind', '?')} {ns + '/' if ns else ''}{meta.get('name', '?')}"


def labels_text(labels: dict) -> str:
    """Labels as ``k=v, k2=v2`` (or ``(no labels)``)."""
    return ", ".join(f"{k}={v}" for k, v in labels.items()) or "(no labels)"


@dataclass(frozen=True)
class PodShape:
    """What a Service needs to know about the Pods: where they live, labels, containers."""

    source: str
    namespace: str | None
    labels: dict
    containers: tuple
    enable_service_links: bool


def pod_shape(obj: dict) -> PodShape:
    """The Pod side of a Deployment, a Pod, or a bare Pod template."""
    if not isinstance(obj, dict):
        raise InputError(f"Expected a Deployment, Pod or Pod template as a dict, got {type(obj).__name__}.",
                         "Load it with llmserve.world.manifests.load_one('base/vllm-deployment.yaml').")
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    if kind == "Pod":
        template = obj
    elif kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"):
        template = (obj.get("spec") or {}).get("template")
    elif kind is None and "spec" in obj:
        template = obj
    else:
        raise InputError(f"{describe(obj)} does not run Pods, so no Service can select it.",
                         "Pass the Deployment (or its spec.template).")
    if not isinstance(template, dict):
        raise InputError(f"{describe(obj)} has no spec.template.", "A Deployment needs spec.template with the Pod.")
    spec = template.get("spec") or {}
    return PodShape(
        source=describe(obj) if kind else "the Pod template",
        namespace=meta.get("namespace") if kind else None,
        labels=dict(((template.get("metadata") or {}).get("labels")) or {}),
        containers=tuple(spec.get("containers") or ()),
        enable_service_links=spec.get("enableServiceLinks", True) is not False,
    )


# -- selectors ----------------------------------------------------------------
def selector_mismatches(selector: dict, labels: dict) -> list[str]:
    """What stops an equality selector (a Service's ``spec.selector``) matching ``labels``.

    Every key/value of the selector must be among the labels; extra labels on the Pod do
    not matter (Kubernetes docs, "Labels and Selectors").
    """
    problems = []
    for key, value in selector.items():
        if key not in labels:
            problems.append(f"the Pods have no label {key}")
        elif str(labels[key]) != str(value):
            problems.append(f"{key} is {labels[key]!r} on the Pods, not {value!r}")
    return problems


def label_selector_mismatches(selector: dict, labels: dict) -> list[str]:
    """Like :func:`selector_mismatches` for a set-based selector (``matchLabels`` + ``matchExpressions``)."""
    problems = selector_mismatches(selector.get("matchLabels") or {}, labels)
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), [str(v) for v in expr.get("values") or []]
        has = key in labels
        value = str(labels.get(key)) if has else None
        if op == "In" and value not in values:
            problems.append(f"{key} must be one of {values} but is {value if has else 'missing'}")
        elif op == "NotIn" and has and value in values:
            problems.append(f"{key} must not be one of {values} but is {value!r}")
        elif op == "Exists" and not has:
            problems.append(f"the Pods have no label {key} (operator Exists)")
        elif op == "DoesNotExist" and has:
            problems.append(f"the Pods carry label {key} (operator DoesNotExist)")
        elif op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            problems.append(f"operator {op!r} is not one of In, NotIn, Exists, DoesNotExist")
    return problems


def _service_selector_findings(service: dict, pods: PodShape) -> list[Finding]:
    name = (service.get("metadata") or {}).get("name", "?")
    selector = (service.get("spec") or {}).get("selector") or {}
    check = "service selector"
    if not selector:
        return [Finding(WARNING, f"Service {name} has no selector, so Kubernetes creates no EndpointSlices for it: "
                                 "it reaches only the endpoints someone writes by hand.",
                        f"Add spec.selector with the Pods' labels, e.g. {labels_text(pods.labels)}.", check)]
    wrong = selector_mismatches(selector, pods.labels)
    if not wrong:
        return [Finding(OK, f"the selector {labels_text(selector)} picks the Pods of {pods.source} "
                            f"(their labels: {labels_text(pods.labels)}).", check=check)]
    return [Finding(ERROR, f"the Service selects {labels_text(selector)} but the Pods of {pods.source} are "
                           f"labelled {labels_text(pods.labels)}: {'; '.join(wrong)}. The Service gets no "
                           "endpoints, so every connection to it is refused or times out, while the Pods run fine.",
                    "Copy the Pod template's labels into the Service's spec.selector (one stable label such as "
                    "app.kubernetes.io/name is enough); the Pods need not change.", check)]


def _deployment_selector_findings(workload: dict) -> list[Finding]:
    if workload.get("kind") != "Deployment":
        return []
    selector = (workload.get("spec") or {}).get("selector")
    labels = pod_shape(workload).labels
    check = "deployment selector"
    if not selector:
        return [Finding(ERROR, f"{describe(workload)} has no spec.selector; apps/v1 requires one.",
                        f"Add spec.selector.matchLabels with the template's labels, e.g. {labels_text(labels)}.",
                        check)]
    wrong = label_selector_mismatches(selector, labels)
    if not wrong:
        return [Finding(OK, f"{describe(workload)} owns its Pods: its selector matches its template labels.",
                        check=check)]
    return [Finding(ERROR, f"{describe(workload)}'s selector does not match its own Pod template "
                           f"({'; '.join(wrong)}). The API server refuses it (`selector` does not match "
                           "template `labels`).",
                    "Make spec.selector.matchLabels a subset of spec.template.metadata.labels. The selector of "
                    "an existing Deployment cannot be changed: delete and re-create it if you must.", check)]


def _namespace_findings(service: dict, pods: PodShape) -> list[Finding]:
    svc_ns = (service.get("metadata") or {}).get("namespace")
    if pods.namespace is None or svc_ns == pods.namespace:
        return []
    return [Finding(ERROR, f"the Service is in namespace {svc_ns or '(none: the kubeconfig default)'} but "
                           f"{pods.source} is in {pods.namespace}: a selector only picks Pods of the Service's "
                           "own namespace.",
                    f"Put both in the same namespace (metadata.namespace: {pods.namespace}).", "namespace")]


# -- ports --------------------------------------------------------------------
def container_ports(pods: PodShape) -> list[tuple[str, str | None, int, str]]:
    """``(container, port name, containerPort, protocol)`` for every declared port."""
    out = []
    for c in pods.containers:
        for p in c.get("ports") or []:
            out.append((c.get("name", "?"), p.get("name"), int(p.get("containerPort", 0)), p.get("protocol", "TCP")))
    return out


def vllm_listen_port(container: dict) -> int | None:
    """The port a vLLM container listens on, read from ``--port`` in its args (default 8000).

    None when the container does not look like a vLLM server.
    """
    words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
    image = str(container.get("image", ""))
    if "vllm" not in image and not any("vllm" in w for w in words):
        return None
    for i, word in enumerate(words):
        if word.startswith("--port="):
            return int(word.split("=", 1)[1])
        if word == "--port" and i + 1 < len(words):
            return int(words[i + 1])
        m = re.search(r"--port[= ](\d+)", word)  # `sh -c "vllm serve … --port 8000"`
        if m:
            return int(m.group(1))
    return DEFAULT_PORT


def resolve_target_port(service_port: dict, pods: PodShape) -> tuple[int | None, str]:
    """The Pod port a Service port sends traffic to, and how it was found.

    ``targetPort`` defaults to ``port``; a string is looked up among the containers' named
    ports (Kubernetes docs, "Service": "Port definitions in Pods have names, and you can
    reference these names in the targetPort attribute of a Service").
    """
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, str) and not target.isdigit():
        for container, name, number, _ in container_ports(pods):
            if name == target:
                return number, f"the name {target!r} is container {container}'s port {number}"
        return None, f"no container declares a port named {target!r}"
    return int(target), ("targetPort is the number " if "targetPort" in service_port
                         else "no targetPort, so it defaults to port ") + str(int(target))


def _port_findings(service: dict, pods: PodShape) -> list[Finding]:
    ports = (service.get("spec") or {}).get("ports") or []
    declared = container_ports(pods)
    names = [n for _, n, _, _ in declared if n]
    listening = [p for c in pods.containers if (p := vllm_listen_port(c)) is not None]
    check = "targetPort"
    if not ports:
        return [Finding(ERROR, "the Service has no ports.", "Add spec.ports with port 8000 and targetPort http.",
                        check)]
    findings = []
    for sp in ports:
        label = f"port {sp.get('name') + ' ' if sp.get('name') else ''}{sp.get('port')}"
        number, how = resolve_target_port(sp, pods)
        if number is None:
            findings.append(Finding(
                ERROR, f"Service {label} sends traffic to targetPort {sp.get('targetPort')!r}, but {how} "
                       f"(the named ports are: {', '.join(names) or 'none'}). The EndpointSlices list the Pods "
                       "without this port, and connections fail.",
                f"Set targetPort to one of {', '.join(repr(n) for n in names) or 'the containerPort numbers'} "
                "(by name, so the Service follows if the number changes), or name the containerPort "
                f"{sp.get('targetPort')!r}.", check))
        elif listening and number not in listening:
            findings.append(Finding(
                ERROR, f"Service {label} sends traffic to Pod port {number} ({how}), but vLLM listens on "
                       f"{', '.join(map(str, listening))} (its --port). Connections are refused.",
                f"Point targetPort at the port vLLM listens on ({listening[0]}), best by the containerPort's "
                "name.", check))
        elif declared and number not in [n for _, _, n, _ in declared]:
            findings.append(Finding(
                WARNING, f"Service {label} sends traffic to Pod port {number} ({how}); no container declares it. "
                         "Kubernetes still forwards there, so it works only if a process listens on it.",
                "Declare the port in the container's ports with a name and use that name as targetPort.", check))
        else:
            findings.append(Finding(OK, f"Service {label} reaches Pod port {number}: {how}.", check=check))
    return findings


# -- names: DNS and injected environment variables -------------------------------
@dataclass(frozen=True)
class DnsName:
    """One name a client can use for the Service, and from where it resolves."""

    name: str
    works_from: str
    record: str = "A/AAAA"


def dns_names(service: dict | str, namespace: str | None = None,
              cluster_domain: str = CLUSTER_DOMAIN) -> list[DnsName]:
    """The DNS names of a Service, shortest first, each with where it resolves.

    A Pod's ``/etc/resolv.conf`` searches ``<ns>.svc.<domain> svc.<domain> <domain>``
    (Kubernetes docs, "DNS for Services and Pods"), so the short forms are the FQDN with
    parts left off. Named ports also get SRV records ``_<port>._<proto>.<svc>.<ns>.svc.<domain>``.
    None of these resolve on your laptop: cluster DNS serves only the cluster (use a port-forward).
    """
    if isinstance(service, dict):
        meta = service.get("metadata") or {}
        name, namespace = meta.get("name"), namespace or meta.get("namespace")
        ports = (service.get("spec") or {}).get("ports") or []
    else:
        name, ports = service, []
    if not name or not namespace:
        raise InputError("A Service's DNS name needs both its name and its namespace.",
                         f"Pass the Service manifest (with metadata.namespace) or namespace='{system().namespace}'.")
    fqdn = f"{name}.{namespace}.svc.{cluster_domain}"
    names = [
        DnsName(name, f"Pods in namespace {namespace} only (the search list adds {namespace}.svc.{cluster_domain})"),
        DnsName(f"{name}.{namespace}", f"Pods in any namespace (the search list adds svc.{cluster_domain})"),
        DnsName(f"{name}.{namespace}.svc", f"Pods in any namespace (the search list adds {cluster_domain})"),
        DnsName(fqdn, "Pods in any namespace, without the search list; the name to put in configuration"),
    ]
    for p in ports:
        if p.get("name"):
            names.append(DnsName(f"_{p['name']}._{p.get('protocol', 'TCP').lower()}.{fqdn}",
                                 f"SRV lookups from any Pod: answers port {p.get('port')} and the name {fqdn}", "SRV"))
    return names


def env_prefix(service_name: str) -> str:
    """``vllm-qwen25-coder-7b`` → ``VLLM_QWEN25_CODER_7B`` (the kubelet's makeEnvVariableName)."""
    prefix = service_name.replace(".", "_").replace("-", "_").upper()
    return "_" + prefix if prefix[:1].isdigit() else prefix


def service_env_vars(service: dict | str, ports: list[dict] | None = None,
                     cluster_ip: str = "<ClusterIP>") -> dict[str, str]:
    """The environment variables the kubelet injects into Pods for this Service.

    Names and value shapes follow the kubelet (pkg/kubelet/envvars/envvars.go; Kubernetes
    docs, "Service" → "Environment variables"): ``{P}_SERVICE_HOST``, ``{P}_SERVICE_PORT``,
    ``{P}_SERVICE_PORT_{PORTNAME}`` per named port, and the Docker-link ones
    ``{P}_PORT=tcp://IP:port`` (first port) and ``{P}_PORT_{port}_{PROTO}[_PROTO|_PORT|_ADDR]``.
    A headless Service (``clusterIP: None``) injects nothing. Given only a name, the
    course's one port (``http``, 8000/TCP) is assumed.
    """
    if isinstance(service, dict):
        name = (service.get("metadata") or {}).get("name", "")
        spec = service.get("spec") or {}
        if spec.get("clusterIP") == "None":
            return {}
        ports = spec.get("ports") or []
        cluster_ip = spec.get("clusterIP") or cluster_ip
    else:
        name = service
        ports = ports if ports is not None else [{"name": "http", "port": DEFAULT_PORT, "protocol": "TCP"}]
    if not name or not ports:
        return {}
    p = env_prefix(name)
    out = {f"{p}_SERVICE_HOST": cluster_ip, f"{p}_SERVICE_PORT": str(ports[0]["port"])}
    for sp in ports:
        if sp.get("name"):
            out[f"{p}_SERVICE_PORT_{env_prefix(sp['name'])}"] = str(sp["port"])
    for i, sp in enumerate(ports):
        proto = sp.get("protocol", "TCP")
        url = f"{proto.lower()}://{cluster_ip}:{sp['port']}"
        if i == 0:
            out[f"{p}_PORT"] = url
        pp = f"{p}_PORT_{sp['port']}_{proto.upper()}"
        out[pp] = url
        out[f"{pp}_PROTO"] = proto.lower()
        out[f"{pp}_PORT"] = str(sp["port"])
        out[f"{pp}_ADDR"] = cluster_ip
    return out


def env_var_findings(service: dict | str, pods: PodShape | None = None) -> list[Finding]:
    """Warn when the variables injected for this Service meet vLLM's own ``VLLM_*`` variables.

    * An exact hit (a Service named ``vllm`` → ``VLLM_PORT=tcp://…``) is an error: vLLM
      reads ``VLLM_PORT`` as the base of its internal ports and 0.32.0 stops with
      "VLLM_PORT 'tcp://…' appears to be a URI. This may be caused by a Kubernetes service
      discovery issue" (vllm/envs.py).
    * Any other ``VLLM_`` name is a warning: vLLM 0.32.0 logs "Unknown vLLM environment
      variable detected" for each (fatal with ``--fail-on-environ-validation``).

    ``enableServiceLinks: false`` in the Pod spec turns the injection off.
    """
    name = service if isinstance(service, str) else (service.get("metadata") or {}).get("name", "")
    injected = service_env_vars(service)
    check = "env vars"
    if pods is not None and not pods.enable_service_links:
        return [Finding(OK, f"{pods.source} sets enableServiceLinks: false, so no {env_prefix(name)}_* variables "
                            "are injected (DNS names work the same).", check=check)]
    hits = sorted(n for n in injected if n in VLLM_COLLIDABLE_ENV_VARS)
    vllm_like = sorted(n for n in injected if n.startswith("VLLM_") and n not in VLLM_COLLIDABLE_ENV_VARS)
    if hits:
        shown = ", ".join(f"{n}={injected[n]}" for n in hits)
        return [Finding(ERROR, f"a Service named {name!r} makes Kubernetes inject {shown} into every Pod started "
                               "after it in the namespace; vLLM reads that variable itself and stops at start-up "
                               "(\"VLLM_PORT 'tcp://…' appears to be a URI … Kubernetes service discovery issue\").",
                        f"Rename the Service (the course uses {system().service}), and set "
                        "enableServiceLinks: false in the Pod spec.", check)]
    if vllm_like:
        return [Finding(WARNING, f"the Service name {name!r} makes Kubernetes inject {len(vllm_like)} VLLM_* "
                                 f"variables ({', '.join(vllm_like[:3])}, …) that vLLM does not know; vLLM 0.32 "
                                 "logs \"Unknown vLLM environment variable detected\" for each (fatal with "
                                 "--fail-on-environ-validation).",
                        "Harmless otherwise; set enableServiceLinks: false in the Deployment's Pod spec to "
                        "stop the injection (clients use the DNS name anyway).", check)]
    return [Finding(OK, f"the injected {env_prefix(name)}_* variables collide with nothing vLLM reads.",
                    check=check)]


# -- the one call the notebook makes ---------------------------------------------
def selector_report(service: dict, pod_template_or_deployment: dict) -> Report:
    """Check that ``service`` reaches the Pods of ``pod_template_or_deployment``.

    Checks, each explained with its fix: the namespace; the Service selector against the
    Pod template labels; every ``targetPort`` against the containers' ports (by name or
    number) and vLLM's ``--port``; the Deployment's own selector against its template; the
    injected environment variables against vLLM's.
    """
    if not isinstance(service, dict) or service.get("kind") != "Service":
        got = describe(service) if isinstance(service, dict) else type(service).__name__
        raise InputError(f"Expected a Service, got {got}.",
                         "Load it with llmserve.world.manifests.load_one('base/vllm-service.yaml').")
    pods = pod_shape(pod_template_or_deployment)
    findings = (_namespace_findings(service, pods)
                + _service_selector_findings(service, pods)
                + _port_findings(service, pods)
                + _deployment_selector_findings(pod_template_or_deployment)
                + env_var_findings(service, pods))
    return Report(f"{describe(service)} → {pods.source}", tuple(findings), ok_text=REACHES)


def own_findings(report: Report, baseline: Report) -> Report:
    """The findings of ``report`` that ``baseline`` does not have: what this Service changes.

    The lab checks each broken example against the same Pods as the course's own Service
    (the baseline) and shows only the difference, so a warning both share (the injected
    ``VLLM_*`` variables of the same name) is not repeated under every example.
    """
    shared = set(baseline.findings)
    return Report(report.subject, tuple(f for f in report.findings if f not in shared), report.ok_text)


def parse_selector(text: str) -> dict:
    """``"a=b, c=d"`` → ``{"a": "b", "c": "d"}`` (for the panel's text box)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.replace("\n", ",").split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{part!r} is not a key=value label.",
                             "Write labels as key=value, separated by commas, e.g. "
                             f"app.kubernetes.io/name={system().service}.")
        out[key.strip()] = value.strip()
    return out


# -- the same by hand -------------------------------------------------------------------
def kubectl_commands(service: dict) -> dict[str, str]:
    """The ``kubectl`` command that does by hand what each live cell of the lab does.

    Keys: ``apply``, ``endpoints``, ``wait``, ``forward``, ``health``, ``models``.
    """
    meta = service.get("metadata") or {}
    name, ns = meta.get("name", system().service), meta.get("namespace", system().namespace)
    port = ((service.get("spec") or {}).get("ports") or [{}])[0]
    port_ref = port.get("name") or port.get("port", DEFAULT_PORT)
    local = port.get("port", DEFAULT_PORT)
    slices = f"kubectl get endpointslices -n {ns} -l kubernetes.io/service-name={name}"
    return {
        "apply": "kubectl apply -f manifests/base/vllm-service.yaml",
        "endpoints": slices + " -o wide",
        "wait": slices + " -w",
        "forward": f"kubectl port-forward -n {ns} service/{name} {local}:{port_ref}",
        "health": f"curl -s -o /dev/null -w '%{{http_code}}\\n' http://127.0.0.1:{local}/health",
        "models": f"curl -s http://127.0.0.1:{local}/v1/models -H \"Authorization: Bearer $VLLM_API_KEY\"",
    }
