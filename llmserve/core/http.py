"""One HTTP helper for every request the course sends to a vLLM server, a router or Prometheus.

Used by the service and stack chapters (``/health``, ``/v1/models``), the serving
client, the metrics reader and the local engine's start-up wait. Every failure
becomes a :class:`~llmserve.core.errors.ServerError` whose message names the fix;
nothing here knows whether the URL is a port-forward, a local engine or a router.
"""
from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass

from llmserve.core.errors import ServerError
from llmserve.core.names import system


@dataclass(frozen=True)
class HttpResult:
    url: str
    status: int
    text: str
    method: str = "GET"

    @property
    def json(self):
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    def __str__(self) -> str:
        body = self.text if len(self.text) < 300 else self.text[:297] + "…"
        return f"{self.method} {self.url} → {self.status} {body}"


def api_key_from_env() -> str | None:
    """The API key the course reads from ``VLLM_API_KEY`` (None when unset or empty)."""
    return os.environ.get("VLLM_API_KEY") or None


def join(url: str, path: str) -> str:
    return url.rstrip("/") + "/" + path.lstrip("/") if path else url


def encode(body: dict | None, api_key: str | None, accept: str = "application/json") -> tuple[bytes | None, dict]:
    """A request's JSON body and headers, the bearer key among them when there is one."""
    headers = {"Accept": accept}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return data, headers


def request(url: str, path: str = "", *, method: str = "GET", body: dict | None = None,
            api_key: str | None = None, timeout: float = 5.0, accept: str = "application/json") -> HttpResult:
    """Send one request to ``url + path``; any failure becomes a :class:`ServerError` naming the fix."""
    full = join(url, path)
    data, headers = encode(body, api_key, accept)
    req = urllib.request.Request(full, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return HttpResult(full, resp.status, resp.read().decode("utf-8", "replace"), method)
    except urllib.error.HTTPError as err:
        text = err.read().decode("utf-8", "replace") if err.fp else ""
        raise http_error(full, err.code, text, api_key) from None
    except urllib.error.URLError as err:
        raise connection_error(full, err.reason, timeout) from None
    except (socket.timeout, TimeoutError) as err:
        raise connection_error(full, err, timeout) from None
    except (ConnectionError, OSError) as err:  # reset / closed mid-answer (http.client.RemoteDisconnected)
        raise connection_error(full, err, timeout) from None


def get(url: str, path: str = "/health", timeout: float = 5.0, api_key: str | None = None) -> HttpResult:
    """GET ``url + path``. vLLM guards ``/v1/*`` with the API key and leaves ``/health`` open."""
    return request(url, path, timeout=timeout, api_key=api_key)


def secret_command() -> str:
    """The kubectl command that prints the API key from its Secret (in backquotes, for a message)."""
    n = system()
    return (f"`kubectl get secret {n.api_key_secret} -n {n.namespace} "
            "-o jsonpath='{.data.api-key}' | base64 -d`")


def http_error(url: str, status: int, body: str, api_key: str | None) -> ServerError:
    # The course's names are read only where a hint needs them, so a plain 400 never depends on the manifests.
    if status == 401:
        n = system()
        if api_key:
            return ServerError(f"{url} answered 401 Unauthorized: the API key you sent is not the server's.",
                               f"Set VLLM_API_KEY to the key in the Secret {n.api_key_secret}: {secret_command()}.")
        return ServerError(f"{url} answered 401 Unauthorized: this vLLM server wants an API key "
                           "(it was started with --api-key or VLLM_API_KEY).",
                           f"Export VLLM_API_KEY with the key from the Secret {n.api_key_secret} and re-run: "
                           f"{secret_command()}.")
    if status == 404:
        return ServerError(f"{url} answered 404 Not Found.",
                           "Check the path: vLLM's OpenAI server has /health, /v1/models, /v1/chat/completions.")
    if status >= 500:
        n = system()
        return ServerError(f"{url} answered {status}: {body[:200]}",
                           f"The server is up but failing: read the Pod's logs (`kubectl logs -n {n.namespace} "
                           f"deploy/{n.deployment}`).")
    return ServerError(f"{url} answered {status}: {body[:200]}", "Read the message above; it comes from the server.")


def connection_error(url: str, reason, timeout: float) -> ServerError:
    if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason):
        return ServerError(f"{url} did not answer within {timeout:g} s.",
                           "The server may still be loading the model (the Pod is not Ready), or is busy: wait and "
                           f"retry with a longer timeout; check `kubectl get pods -n {system().namespace}`.")
    if isinstance(reason, ConnectionRefusedError) or "refused" in str(reason).lower():
        return ServerError(f"Connection refused at {url}: nothing listens there.",
                           "Open the port-forward first (`with portforward.forward(cluster) as url:`) and use the "
                           "URL it yields inside the `with` block; locally, start the server.")
    return ServerError(f"The connection to {url} closed without an answer ({type(reason).__name__}: {reason}).",
                       "Through a port-forward this means nothing listens on that Pod port: the server is not up yet "
                       f"or the remote port is wrong (vLLM listens on --port, {system().container_port} in the course).")


def model_ids(result: HttpResult) -> list[str]:
    """The served model names in a ``/v1/models`` answer."""
    data = result.json or {}
    return [m.get("id") for m in data.get("data", []) if isinstance(m, dict)]
