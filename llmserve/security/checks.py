"""Pure rules: the API-key probes, what each should answer, and the verdict on what it did answer.

Used by the API-key lab (notebooks/api-key-lab.ipynb) through ``llmserve.security.live``,
which sends the requests. The same probes run twice: straight at vLLM, where the
key guards ``/v1`` and nothing else, and through the gateway, where only the client
paths reach vLLM at all.

An answer is judged on what it means for the server, not only on whether it was
foreseen: a ``200`` from ``/invocations`` without a key is exactly what vLLM 0.32 does,
and it is an error of the setup (anyone who reaches the port generates text).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from llmserve.core.findings import ERROR, OK, WARNING, Finding, Report
from llmserve.security import policy, routes

#: What the probes send: one short chat, the same body everywhere it is sent.
PROMPT = "Say hello."


@dataclass(frozen=True)
class Probe:
    """One request of the lab: ``body`` is ``"chat"``, ``"tokenize"`` or ``""`` (none)."""

    name: str
    method: str
    path: str
    body: str
    with_key: bool

    def payload(self, model: str) -> dict | None:
        if self.body == "chat":
            return {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8}
        if self.body == "tokenize":
            return {"model": model, "prompt": PROMPT}
        return None

    def curl(self, url: str, model: str) -> str:
        """The same request by hand."""
        key = ' -H "Authorization: Bearer $VLLM_API_KEY"' if self.with_key else ""
        payload = self.payload(model)
        data = "" if payload is None else f" -H 'Content-Type: application/json' -d '{json.dumps(payload)}'"
        return f"curl -s -o /dev/null -w '%{{http_code}}\\n' -X {self.method} {url}{self.path}{key}{data}"


PROBES = (
    Probe("the model list, no key", "GET", "/v1/models", "", False),
    Probe("a chat completion, no key", "POST", "/v1/chat/completions", "chat", False),
    Probe("the same chat body to /invocations, no key", "POST", "/invocations", "chat", False),
    Probe("the tokenizer, no key", "POST", "/tokenize", "tokenize", False),
    Probe("a chat completion with the key", "POST", "/v1/chat/completions", "chat", True),
)


@dataclass(frozen=True)
class Answer:
    probe: Probe
    status: int
    text: str


def expected_status(probe: Probe, through_gateway: bool, conf_text: str | None = None) -> int:
    """What a correct vLLM 0.32 (behind the gateway, if ``through_gateway``) answers."""
    if through_gateway:
        decision = policy.decide(policy.parse(conf_text or policy.gateway_conf()), probe.method, probe.path)
        if not decision.passed:
            return decision.status
    if probe.with_key:
        return 200
    return 401 if routes.is_guarded(probe.path) else 200


def verdict(a: Answer, through_gateway: bool, conf_text: str | None = None) -> Finding:
    """One answer judged: ok (the key is asked, or the gateway blocks), warning (an open route that
    does not generate), error (inference without the key, or a status this setup should not give)."""
    p = a.probe
    want = expected_status(p, through_gateway, conf_text)
    said = f"{p.method} {p.path} → {a.status}"
    if a.status != want:
        return Finding(ERROR, f"{said}; expected {want} here. {a.text[:160]}", _fix_unexpected(p, a.status),
                       check=p.name)
    if p.with_key or a.status == 401:
        return Finding(OK, f"{said}: {'the key works' if p.with_key else 'the key is asked'}", check=p.name)
    if a.status in (403, 404):
        return Finding(OK, f"{said}: the gateway does not pass it to vLLM", check=p.name)
    if _runs_the_model(p.path):
        return Finding(ERROR, f"{said}: inference WITHOUT the key, the key does not guard this path",
                       "Put the API gateway in front of vLLM (manifests/components/api-gateway) and let only "
                       "the gateway's Pods reach vLLM's port.", check=p.name)
    return Finding(WARNING, f"{said}: open without a key (no generation, but the server works)",
                   "The gateway answers 404 to it; without one, anyone who reaches the port uses it.",
                   check=p.name)


def judge(answers: list[Answer], through_gateway: bool, subject: str, conf_text: str | None = None) -> Report:
    """Every answer's :func:`verdict`, in the order of the probes."""
    return Report(subject, tuple(verdict(a, through_gateway, conf_text) for a in answers),
                  ok_text="no inference without the key")


def _runs_the_model(path: str) -> bool:
    try:
        return routes.route(path).kind == "inference"
    except KeyError:
        return False


def _fix_unexpected(probe: Probe, status: int) -> str:
    if status == 401 and probe.with_key:
        return "The key sent is not the server's: use the key from the Secret (or the lab's generated key)."
    if status == 200 and not probe.with_key and routes.is_guarded(probe.path):
        return "The server was started without a key: pass --api-key or set VLLM_API_KEY."
    if status in (403, 404):
        return "Something in front of vLLM refuses this path: is this really the server you meant to probe?"
    return "Read the answer above; it comes from the server (or the gateway)."
