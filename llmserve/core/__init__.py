"""The small shared core every chapter builds on (pure: no cluster, no server, no widgets).

* :mod:`~llmserve.core.errors`   the one exception family (``what`` + ``fix``);
* :mod:`~llmserve.core.findings` the one Finding/Report type and its HTML;
* :mod:`~llmserve.core.quantity` Kubernetes quantities, one exact parser;
* :mod:`~llmserve.core.manifest_files` manifests as data (read, parse);
* :mod:`~llmserve.core.names`    the system's names, read once from ``manifests/base``;
* :mod:`~llmserve.core.objects`  pure readers of Kubernetes objects (containers, args, Pods);
* :mod:`~llmserve.core.vllm`     the defaults of the pinned vLLM release, with their sources;
* :mod:`~llmserve.core.http`     one HTTP helper whose failures are :class:`CourseError`;
* :mod:`~llmserve.core.waiting`  one wait-with-progress loop that every wait uses;
* :mod:`~llmserve.core.paths`    where the repository's folders are.

``http`` and ``waiting`` touch the outside world only through what the caller passes
(a URL, a check function); the import rule (tests/test_layers.py) lets pure chapter
rules import everything here except those two.
"""
