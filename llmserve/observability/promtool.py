"""Live: Prometheus' own checker, ``promtool``, on the course's rules, their unit tests and scrape configurations.

Used by notebooks/observability-lab.ipynb and tests/observability (the test command runs these
checks, so a broken rule fails the suite). ``promtool`` comes with Debian's ``prometheus``
package (scripts/setup.sh installs it).

* ``promtool check rules FILE``  parses every rule and its PromQL;
* ``promtool test rules FILE``   runs the unit tests (synthetic series in, expected samples and
  alerts out) of ``vllm.rules.test.yml``;
* ``promtool check config FILE`` parses a ``prometheus.yml``.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from llmserve.observability import alerts
from llmserve.observability.prometheus import binary


@dataclass(frozen=True)
class Checked:
    """One promtool run: the command, whether it passed, and what it printed."""

    command: tuple[str, ...]
    ok: bool
    output: str

    def __str__(self) -> str:
        head = f"$ {' '.join(self.command)}  ->  {'SUCCESS' if self.ok else 'FAILED'}"
        return head + ("\n" + self.output.strip() if self.output.strip() else "")


def run(*args: str, cwd: Path | None = None, timeout_s: float = 120) -> Checked:
    proc = subprocess.run([binary("promtool"), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout_s)
    return Checked(("promtool", *args), proc.returncode == 0, proc.stdout + proc.stderr)


def check_rules(rules_file: str | Path | None = None) -> Checked:
    """``promtool check rules`` on the course's rules file (or another)."""
    p = Path(rules_file) if rules_file else alerts.rules_path()
    return run("check", "rules", p.name, cwd=p.parent)


def run_rule_tests(test_file: str | Path | None = None) -> Checked:
    """``promtool test rules`` on the course's rule unit tests (or another test file), in its folder."""
    p = Path(test_file) if test_file else alerts.rules_test_path()
    return run("test", "rules", p.name, cwd=p.parent)


def check_config(config_file: str | Path) -> Checked:
    """``promtool check config`` on a ``prometheus.yml``."""
    p = Path(config_file)
    return run("check", "config", p.name, cwd=p.parent)
