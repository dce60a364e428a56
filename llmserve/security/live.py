"""Live: send the API-key probes to a server and report the status codes as a Report.

Used by the API-key lab (notebooks/api-key-lab.ipynb). :class:`LabServers` is what it
probes: offline, the local CPU engine with a generated key and the local gateway
(``llmserve.security.gateway``); live, port-forwards to the vLLM Service and to the
gateway's Service, after :func:`apply_gateway` has applied the component.

The probes need every status code as an answer (401, 403 and 404 are what the lab is
about), where ``llmserve.core.http.request`` turns them into errors; so :func:`send`
keeps the status, sends the path exactly as written (no client-side normalisation),
and only a failed connection becomes the core's :class:`ServerError`.
"""
from __future__ import annotations

import http.client
import secrets
import socket
from contextlib import ExitStack
from urllib.parse import urlsplit

from llmserve.core import http as core_http
from llmserve.core.errors import InputError, ServerError
from llmserve.core.findings import SKIP, Finding, Report
from llmserve.core.names import system
from llmserve.security import checks, policy
from llmserve.security.gateway import NGINX_FIX, LocalGateway, nginx_binary
from llmserve.serving.engine import LocalVLLM
from llmserve.world import manifests, mode, portforward
from llmserve.world.cluster import Cluster


def send(url: str, method: str, path: str, body: dict | None = None, api_key: str | None = None,
         timeout: float = 60.0) -> tuple[int, str]:
    """``(status, text)`` of one request to ``url`` + ``path``: the path is sent as given (the lab probes
    paths with ``..`` in them) and any status is an answer, not an error, unlike :func:`core_http.request`."""
    parts = urlsplit(url)
    data, headers = core_http.encode(body, api_key)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request(method, parts.path.rstrip("/") + path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    except (socket.timeout, TimeoutError, OSError, http.client.HTTPException) as err:
        raise core_http.connection_error(url + path, err, timeout) from None
    finally:
        conn.close()


def run_probes(url: str, model: str, api_key: str,
               probes: tuple[checks.Probe, ...] = checks.PROBES) -> list[checks.Answer]:
    """Send every probe; the key goes only with the probes that carry it."""
    answers = []
    for p in probes:
        status, text = send(url, p.method, p.path, p.payload(model), api_key if p.with_key else None)
        answers.append(checks.Answer(p, status, text.strip()))
    return answers


def probe(url: str, model: str, api_key: str, *, through_gateway: bool) -> tuple[list[checks.Answer], Report]:
    """The answers and their verdict for the server at ``url`` (vLLM itself, or the gateway in front of it)."""
    where = "through the API gateway" if through_gateway else "straight to vLLM, no gateway"
    answers = run_probes(url, model, api_key)
    return answers, checks.judge(answers, through_gateway, f"{url} ({where})")


def curl_commands(url: str, model: str) -> list[str]:
    """The probes by hand, for the lab to print beside the cell that sends them."""
    return [p.curl(url, model) for p in checks.PROBES]


def _key_command() -> str:
    """The shell command that prints the key in the cluster's Secret (the core's wording)."""
    return core_http.secret_command().strip("`")


def port_forward_commands() -> list[str]:
    """By hand: the two tunnels of the live lab, to vLLM's Service and to the gateway's."""
    n = system()
    name, port = policy.gateway_service()
    return [f"kubectl port-forward -n {n.namespace} svc/{n.service} {n.service_port}:{n.service_port}",
            f"kubectl port-forward -n {n.namespace} svc/{name} {port}:{port}"]


#: Routes outside /v1 that vLLM 0.32 answers without a key and no client of the course needs
#: (vllm/entrypoints/serve/tokenize/api_router.py, serve/instrumentator/basic.py and metrics.py;
#: /docs is FastAPI's OpenAPI page).
OTHER_OPEN_ROUTES = (("POST", "/detokenize"), ("GET", "/version"), ("GET", "/metrics"), ("GET", "/docs"))


class LabServers:
    """What the lab probes: vLLM straight, and the gateway in front of it.

    ``kind`` is ``"local"`` (the CPU engine with a generated key and the local nginx),
    ``"cluster"`` (port-forwards to the vLLM Service and to the gateway Service; the key from
    ``$VLLM_API_KEY``) or ``"none"`` (nothing to talk to: :meth:`probe` says why, sends nothing).
    """

    def __init__(self, kind: str, reason: str, cluster=None, api_key: str | None = None) -> None:
        self.kind, self.reason, self.cluster = kind, reason, cluster
        self.api_key = api_key
        self.model = system().served_model_name
        self.urls: dict[bool, str] = {}
        self._stack = ExitStack()
        self.engine: LocalVLLM | None = None
        self.gateway: LocalGateway | None = None

    def start(self) -> "LabServers":
        if self.kind == "local":
            self.api_key = self.api_key or secrets.token_urlsafe(32)
            self.engine = self._stack.enter_context(LocalVLLM(api_key=self.api_key, max_model_len=512))
            self.model = self.engine.model
            self.gateway = self._stack.enter_context(LocalGateway(self.engine.port))
            self.urls = {False: self.engine.url, True: self.gateway.url}
        elif self.kind == "cluster":
            self.api_key = self.api_key or core_http.api_key_from_env()
            if not self.api_key:
                raise InputError("Live probes need the server's API key in $VLLM_API_KEY.",
                                 f"In a cell: os.environ['VLLM_API_KEY'] = <the key `{_key_command()}` prints>.")
            name, _ = policy.gateway_service()
            self.urls = {False: self._stack.enter_context(portforward.forward(self.cluster)),
                         True: self._stack.enter_context(portforward.forward(self.cluster, f"service/{name}"))}
        return self

    def probe(self, *, through_gateway: bool) -> tuple[list[checks.Answer], Report]:
        """:func:`probe` on the direct or the gateway URL; with nothing to talk to, a SKIP report."""
        if self.kind == "none":
            where = "the gateway" if through_gateway else "vLLM"
            return [], Report(f"probes to {where}", (Finding(SKIP, f"nothing sent: {self.reason}"),))
        return probe(self.urls[through_gateway], self.model, self.api_key, through_gateway=through_gateway)

    def other_routes(self) -> list[tuple[str, str, int, int]]:
        """``(method, path, status straight to vLLM, status through the gateway)`` for
        :data:`OTHER_OPEN_ROUTES`, no key sent; none when there is nothing to talk to."""
        if self.kind == "none":
            return []
        rows = []
        for method, path in OTHER_OPEN_ROUTES:
            body = {"model": self.model, "tokens": [1, 2]} if path == "/detokenize" else None
            rows.append((method, path, send(self.urls[False], method, path, body)[0],
                         send(self.urls[True], method, path, body)[0]))
        return rows

    def curl_commands(self, *, through_gateway: bool) -> list[str]:
        """The probes by hand against the direct or the gateway URL (``$URL`` when there is none)."""
        return curl_commands(self.urls.get(through_gateway, "$URL"), self.model)

    def by_hand(self) -> list[str]:
        """The commands that set up the same two servers without the course's helpers."""
        if self.kind == "cluster":
            return port_forward_commands() + [f"export VLLM_API_KEY=$({_key_command()})"]
        if self.kind == "local":
            return ["export VLLM_API_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')",
                    "python -m vllm.entrypoints.openai.api_server --model <a model> --port 8000"
                    "   # reads $VLLM_API_KEY",
                    "nginx -p <a folder> -c <the ConfigMap's nginx.conf, upstream 127.0.0.1:8000> -g 'daemon off;'"]
        return []

    def describe(self) -> str:
        if self.kind == "none":
            return f"No server to probe: {self.reason}."
        return (f"{self.kind}: vLLM at {self.urls[False]}, the gateway at {self.urls[True]} "
                f"(model {self.model}; {self.reason})")

    def stop(self) -> None:
        self._stack.close()

    def __enter__(self) -> "LabServers":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def lab_servers(current: mode.Mode, cluster: Cluster | None = None) -> LabServers:
    """The lab's servers for this mode (not started: call ``start()`` or use ``with``)."""
    kind, reason = mode.detect_server(current)
    if kind == "local" and not gateway_available():
        return LabServers("none", f"no nginx on this machine for the local gateway ({NGINX_FIX})")
    if kind == "cluster" and cluster is None:
        cluster = Cluster(context=current.context)
    return LabServers(kind, reason, cluster=cluster)


def apply_gateway(cluster: Cluster, timeout_s: float = 300) -> list:
    """Apply the component's objects (no Secret among them) and wait for a Ready gateway Pod."""
    refs = cluster.apply(manifests.render(policy.COMPONENT))
    name, _ = policy.gateway_service()
    portforward.wait_for_ready_endpoint(cluster, service=name, timeout_s=timeout_s)
    return refs


def apply_command() -> str:
    return f"kubectl apply --server-side -k manifests/{policy.COMPONENT}"


def gateway_available() -> bool:
    try:
        nginx_binary()
        return True
    except ServerError:
        return False
