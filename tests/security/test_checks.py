"""llmserve.security.checks: the probes' expected answers and the verdict on scripted answers
(the answers vLLM 0.32 and the gateway really give are in test_live)."""
from __future__ import annotations

import pytest

from llmserve.security import checks

P = {p.name: p for p in checks.PROBES}
DIRECT = {"the model list, no key": 401, "a chat completion, no key": 401,
          "the same chat body to /invocations, no key": 200, "the tokenizer, no key": 200,
          "a chat completion with the key": 200}
GATEWAY = {**DIRECT, "the same chat body to /invocations, no key": 404, "the tokenizer, no key": 404}


def answers(statuses: dict) -> list[checks.Answer]:
    return [checks.Answer(P[name], status, "{}") for name, status in statuses.items()]


@pytest.mark.parametrize("through, table", [(False, DIRECT), (True, GATEWAY)])
def test_expected_statuses(through, table):
    assert {p.name: checks.expected_status(p, through) for p in checks.PROBES} == table


def test_straight_to_vllm_the_bypass_is_an_error_and_the_tokenizer_a_warning():
    report = checks.judge(answers(DIRECT), False, "direct")
    assert not report.ok
    assert report.checks("error") == ["the same chat body to /invocations, no key"]
    assert report.checks("warning") == ["the tokenizer, no key"]
    assert "WITHOUT the key" in report.errors[0].what and "api-gateway" in report.errors[0].fix


def test_through_the_gateway_everything_is_ok():
    report = checks.judge(answers(GATEWAY), True, "gateway")
    assert report.ok and not report.warnings
    assert len(report.checks("ok")) == len(checks.PROBES)


def test_an_unforeseen_status_is_an_error_with_its_cause():
    no_key_server = {**DIRECT, "the model list, no key": 200}
    report = checks.judge(answers(no_key_server), False, "direct")
    f = next(f for f in report.errors if f.check == "the model list, no key")
    assert "expected 401" in f.what and "--api-key" in f.fix
    wrong_key = {**GATEWAY, "a chat completion with the key": 401}
    f = checks.judge(answers(wrong_key), True, "gw").errors[0]
    assert "expected 200" in f.what and "Secret" in f.fix


def test_payloads_and_curl_lines():
    chat = P["a chat completion with the key"]
    assert chat.payload("m")["messages"][0]["content"] == checks.PROMPT
    assert P["the tokenizer, no key"].payload("m") == {"model": "m", "prompt": checks.PROMPT}
    assert P["the model list, no key"].payload("m") is None
    line = chat.curl("http://127.0.0.1:8000", "m")
    assert line.startswith("curl ") and "Authorization: Bearer $VLLM_API_KEY" in line and "-X POST" in line
    assert "Authorization" not in P["the same chat body to /invocations, no key"].curl("http://h", "m")
