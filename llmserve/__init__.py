"""Helper package of the course *Serving LLMs with vLLM on Kubernetes*.

Three layers, each importing only the ones below it:

1. pure logic (no I/O): :mod:`llmserve.storage`, :mod:`llmserve.workloads`,
   :mod:`llmserve.services`, :mod:`llmserve.kvcache`;
2. the outside world: :mod:`llmserve.world.mode`, :mod:`llmserve.world.manifests`,
   :mod:`llmserve.world.cluster`, :mod:`llmserve.serving`;
3. presentation: :mod:`llmserve.panels` (ipywidgets) and :mod:`llmserve.plots`.

Every failure the learner can cause or meet is raised as a :class:`CourseError`
whose message names the fix.
"""
from llmserve.core.errors import CourseError

__all__ = ["CourseError"]
__version__ = "0.1.0"
