"""llmserve.security.routes: what vLLM 0.32's API key guards, checked against the installed release.

The middleware's rule is `url_path.startswith(GUARDED_PREFIX)` in
vllm/entrypoints/serve/middleware/authenticate.py; vLLM's security guide
(https://docs.vllm.ai/en/stable/usage/security/, "API Key Authentication Limitations")
lists /invocations, /tokenize, /detokenize ... as open.
"""
from __future__ import annotations

import pytest

from llmserve.security import routes, vllm_app


@pytest.mark.parametrize("path, guarded", [
    ("/v1/chat/completions", True), ("/v1/models", True), ("/v2/rerank", True),
    ("/inference/v1/generate", True), ("/cohere/v1/chat", True),
    ("/invocations", False), ("/tokenize", False), ("/detokenize", False), ("/health", False),
    ("/metrics", False), ("/ping", False), ("/scale_elastic_ep", False), ("/generative_scoring", False),
    ("/", False), ("/V1/models", False),          # the prefix test is case-sensitive, like vLLM's
    ("/v1x", True),                               # and a plain string prefix, like vLLM's
])
def test_is_guarded_is_the_middleware_prefix_test(path, guarded):
    assert routes.is_guarded(path) is guarded


def test_the_bypass_routes_are_open_inference():
    bypass = {r.path for r in routes.bypasses()}
    assert bypass == {"/invocations", "/generative_scoring"}
    assert all(not r.guarded and r.kind == "inference" for r in routes.bypasses())


def test_every_client_route_is_guarded_and_every_open_route_is_outside_the_prefixes():
    for path in ("/v1/models", "/v1/chat/completions", "/v1/completions"):
        assert routes.route(path).guarded
    for r in routes.open_routes():
        assert not r.path.startswith(routes.GUARDED_PREFIXES)
    assert {r.path for r in routes.open_routes("control")} == {"/scale_elastic_ep", "/is_scaling_elastic_ep"}


def test_table_rows_list_each_route_once_grouped_by_kind():
    rows = routes.table_rows()
    assert len(rows) == len(routes.ROUTES) == len({r.path for r in routes.ROUTES})
    kinds = [r["kind"] for r in rows]
    assert kinds == sorted(kinds, key=routes.KINDS.index)
    invocations = next(r for r in rows if r["path"] == "/invocations")
    assert invocations["key"] == "NOT asked" and invocations["methods"] == "POST"


def test_an_unknown_route_is_a_clear_error():
    with pytest.raises(KeyError, match="not a route of vLLM 0.32"):
        routes.route("/nope")
    with pytest.raises(ValueError, match="kind must be one of"):
        routes.Route("/x", ("GET",), "admin", "?")


def test_differences_bite():
    table = {r.path: list(r.methods) for r in routes.ROUTES}
    assert routes.differences(table, list(routes.GUARDED_PREFIXES)) == []
    planted = {**table, "/pause": ["POST"]}
    planted.pop("/tokenize")
    planted["/ping"] = ["GET"]
    found = routes.differences(planted, ["/v1"])
    assert any(f.startswith("guarded prefixes") for f in found)
    assert any(f.startswith("/pause") and "not in the table" in f for f in found)
    assert any(f.startswith("/tokenize") and "not registered" in f for f in found)
    assert any(f.startswith("/ping: methods") for f in found)


@pytest.fixture(scope="module")
def installed() -> dict:
    return vllm_app.installed_app()


@pytest.mark.vllm
def test_the_table_is_the_installed_vllms_app(installed):
    assert installed["version"] == "0.32.0"
    assert routes.differences(installed["routes"], installed["guarded_prefixes"]) == []


@pytest.mark.vllm
def test_the_key_can_come_from_a_config_file_but_only_with_a_space(installed):
    # `--config FILE` is expanded by FlexibleArgumentParser._pull_args_from_config, which looks
    # for the token "--config" exactly; `--config=FILE` is parsed as the option and ignored.
    assert installed["config_file_api_key"] == {"--config FILE": ["from-the-file"], "--config=FILE": None}


@pytest.mark.vllm
def test_the_table_report_on_the_installed_vllm(installed):
    report = vllm_app.table_report(app=installed)
    assert report.checks("ok") == ["route table", "--config FILE"]
    assert report.checks("warning") == ["--config=FILE"] and report.ok
    assert "two arguments" in report.warnings[0].fix


def test_the_table_report_names_a_difference():
    app = {"version": "0.33.0", "guarded_prefixes": list(routes.GUARDED_PREFIXES),
           "routes": {**{r.path: list(r.methods) for r in routes.ROUTES}, "/pause": ["POST"]},
           "config_file_api_key": {"--config FILE": ["k"], "--config=FILE": None}}
    report = vllm_app.table_report(app=app)
    assert not report.ok and "/pause" in report.errors[0].what
