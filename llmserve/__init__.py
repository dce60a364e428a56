"""Helper package of the course *Serving LLMs with vLLM on Kubernetes*.

One folder per chapter over a small shared core (see CONTRIBUTING.md):

* :mod:`llmserve.core`  the shared core: errors, findings, quantities, the system's names,
  pure object readers, vLLM defaults, one HTTP helper, one wait loop;
* :mod:`llmserve.world` the outside world every chapter shares: mode, cluster, port-forward,
  manifest rendering and validation;
* one folder per chapter (``storage``, ``deployment``, ``service``, ``kvcache``, ``serving``,
  ``stack``, ``security``, ``routing``, ``observability``, ``workshop``, ``troubleshooting``,
  ``system``), each with pure rules, live actions and presentation kept in separate modules.

The layer rule is enforced by tests/test_layers.py. Every failure the learner can cause or
meet is raised as a :class:`CourseError` whose message names the fix.
"""
from llmserve.core.errors import CourseError

__all__ = ["CourseError"]
__version__ = "0.1.0"
