"""The KV-cache chapter's code (book/kv-cache.md, notebooks/kv-cache-lab.ipynb)."""
