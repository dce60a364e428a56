"""One exception family for everything the learner can get wrong or meet.

Used by every chapter. Each error carries ``what`` (what happened) and ``fix``
(what to do about it); ``str(err)`` reads as one message naming the fix, so a
notebook cell can show it instead of a traceback.
"""
from __future__ import annotations


class CourseError(Exception):
    """A failure explained in plain words, with the fix."""

    def __init__(self, what: str, fix: str = "") -> None:
        self.what = what
        self.fix = fix
        super().__init__(f"{what}\nFix: {fix}" if fix else what)


class InputError(CourseError, ValueError):
    """A value typed into a calculator, checker or panel is not valid."""


class ManifestError(CourseError):
    """A manifest file is missing, is not YAML, or does not validate."""


class ClusterError(CourseError):
    """The Kubernetes cluster could not be reached or refused a request."""


class ServerError(CourseError):
    """The vLLM server (local or in the cluster) is down or refused a request."""


def require(condition: bool, what: str, fix: str) -> None:
    """Raise :class:`InputError` unless ``condition`` holds."""
    if not condition:
        raise InputError(what, fix)
