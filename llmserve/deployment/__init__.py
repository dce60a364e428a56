"""The Deployment chapter (book/deployment.md, notebooks/deployment-lab.ipynb)."""
