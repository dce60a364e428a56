"""The Service chapter (book/service.md, notebooks/service-lab.ipynb).

Pure rules: ``rules`` (selector, ports, DNS names, injected variables, by hand).
Live: ``live``. Presentation: ``panel``.
"""
