"""The Deployment chapter (book/deployment.md, notebooks/deployment-lab.ipynb).

Pure rules: ``budgets`` (probe, memory, shutdown), ``diagnose`` (a rollout's state),
``workload`` (the manifest read, changed and said by hand). Live: ``live``.
Presentation: ``panel``.
"""
