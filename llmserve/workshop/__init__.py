"""The workshop kit (book/workshop/, notebooks/gpu-box-check.ipynb): checking the GPU box.

* ``checks`` (pure rules): every check of the box on plain data, each a Finding;
* ``live``: gathers the inputs (files, disk, nvidia-smi, torch, the cluster) and runs the checks;
* ``report`` (presentation): the plain-text report and what to do about each problem.
"""
