"""llmserve.security.vllm_app: the runner's errors (the success path is in test_routes)."""
from __future__ import annotations

import sys

import pytest

from llmserve.core.errors import ServerError
from llmserve.security import vllm_app


def test_a_missing_interpreter_names_the_setup_script(tmp_path):
    with pytest.raises(ServerError, match="scripts/setup.sh"):
        vllm_app.installed_app(python=tmp_path / "no-python")


def test_an_interpreter_without_vllm_fails_with_its_message(tmp_path):
    with pytest.raises(ServerError, match="No module named 'vllm'"):
        vllm_app.installed_app(python=sys.executable)


def test_the_script_runs_in_the_other_interpreter_and_imports_no_llmserve():
    text = vllm_app.SCRIPT.read_text()
    assert "llmserve" not in text.split('"""', 2)[2]   # after the docstring


def test_without_vllm_the_table_report_skips_and_says_how_to_install(tmp_path):
    report = vllm_app.table_report(python=tmp_path / "no-python")
    assert report.ok and report.checks("skip") and "setup.sh" in report.findings[0].fix

