"""One finding type and one report type for every checker of the course, and their HTML.

Used by the storage, service and workshop chapters (the claim checker, the Service
checker, the GPU-box check) and by every panel that shows a verdict or an error.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Iterable

from llmserve.core.errors import CourseError

OK, WARNING, ERROR, SKIP = "ok", "warning", "error", "skip"
LEVELS = (OK, WARNING, ERROR, SKIP)
MARKS = {OK: "✓", WARNING: "!", ERROR: "✗", SKIP: "–"}
COLORS = {OK: "#1a7f37", WARNING: "#9a6700", ERROR: "#cf222e", SKIP: "#57606a"}


@dataclass(frozen=True)
class Finding:
    """One verdict of one check: ``level`` is ok, warning (works, but risky), error or skip."""

    level: str
    what: str
    fix: str = ""
    check: str = ""          # a short name of the check ("selector", "GPU allocatable")
    see: str | None = None   # a troubleshooting slug: book/troubleshooting.md#ts-<see>

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, not {self.level!r}")

    def __str__(self) -> str:
        name = f"[{self.check}] " if self.check else ""
        return f"{MARKS[self.level]} {name}{self.what}" + (f"\n    Fix: {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class Report:
    """Everything the checks found about one subject (a claim, a Service, a GPU box)."""

    subject: str
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    ok_text: str = "OK"      # the headline when nothing is an error

    def __post_init__(self) -> None:
        object.__setattr__(self, "findings", tuple(self.findings))

    def at(self, level: str) -> list[Finding]:
        return [f for f in self.findings if f.level == level]

    @property
    def errors(self) -> list[Finding]:
        return self.at(ERROR)

    @property
    def warnings(self) -> list[Finding]:
        return self.at(WARNING)

    @property
    def ok(self) -> bool:
        """True when nothing is an error (warnings allowed)."""
        return not self.errors

    def checks(self, level: str | None = None) -> list[str]:
        """The names of the checks with findings (of one level, if given)."""
        return [f.check for f in self.findings if level is None or f.level == level]

    def headline(self) -> str:
        n_err, n_warn = len(self.errors), len(self.warnings)
        head = self.ok_text if self.ok else f"{n_err} problem{'s' * (n_err != 1)}"
        return f"{self.subject}: {head}" + (f", {n_warn} warning{'s' * (n_warn != 1)}" if n_warn else "")

    def __str__(self) -> str:
        return "\n".join([self.headline()] + [f"  {f}".replace("\n", "\n  ") for f in self.findings])

    def _repr_pretty_(self, p, cycle) -> None:  # IPython shows str() instead of the dataclass repr
        p.text(str(self))


def report(subject: str, findings: Iterable[Finding], ok_text: str = "OK") -> Report:
    return Report(subject, tuple(findings), ok_text)


# -- HTML (plain strings, so panels and the static book share them) ----------------
def esc(text: object) -> str:
    return html.escape(str(text))


def finding_html(f: Finding) -> str:
    fix = f"<div style='margin-left:1.4em;color:#57606a'>Fix: {esc(f.fix)}</div>" if f.fix else ""
    name = f"<b>{esc(f.check)}</b>: " if f.check else ""
    return (f"<div><span style='color:{COLORS[f.level]};font-weight:bold'>{MARKS[f.level]}</span> "
            f"{name}{esc(f.what)}{fix}</div>")


def report_html(r: Report) -> str:
    color = COLORS[ERROR] if not r.ok else COLORS[WARNING] if r.warnings else COLORS[OK]
    body = "".join(finding_html(f) for f in r.findings)
    return (f"<div style='border-left:4px solid {color};padding:4px 10px'>"
            f"<div style='font-weight:bold;color:{color}'>{esc(r.headline())}</div>{body}</div>")


def error_html(err: CourseError, title: str = "Input problem") -> str:
    """A CourseError as a panel shows it: what happened, then the fix (never a traceback)."""
    fix = f"<br><b>Fix:</b> {esc(err.fix)}" if err.fix else ""
    return (f"<div style='border-left:4px solid {COLORS[ERROR]};padding:4px 10px;color:{COLORS[ERROR]}'>"
            f"<b>{esc(title)}:</b> {esc(err.what)}{fix}</div>")
