"""The KV-cache chapter's code (book/kv-cache.md, notebooks/kv-cache-lab.ipynb).

Pure rules: ``formula`` (bytes of the cache and of the weights), ``paging``
(contiguous reservation against blocks), ``planner`` (vLLM 0.32's cache sizing and
its start-up log). Live, on a torch device: ``attention`` (the lab's decoder and its
cache) and ``measure``. Presentation: ``report`` (tables), ``panel`` (widgets) and
``plots`` (figures).
"""
