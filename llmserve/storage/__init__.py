"""The storage chapter (``book/storage.md``, ``notebooks/storage-lab.ipynb``): the weights volume and its claim.

* :mod:`~llmserve.storage.rules`  pure rules: the PV controller's binding paths, access modes, classes;
* :mod:`~llmserve.storage.checks` pure rules: the learner's checkers of a claim, a volume, a mount, a folder;
* :mod:`~llmserve.storage.live`   live: the course's objects, the cluster (apply, wait, events, release), /models;
* :mod:`~llmserve.storage.panel`  presentation: the binding explorer and the claim checker.
"""
