"""The capstone (book/stack.md, notebooks/stack-lab.ipynb): the whole stack applied, reached, loaded, cleaned up.

* ``order``  (pure rules): the apply order and why, the API key that replaces the committed
  placeholder, the overlay for a cluster's nodes and what it changes, what a Deployment and
  its Pods say about readiness, and the ``kubectl`` commands that do each step by hand;
* ``stats``  (pure rules): the capstone's reading of a load test (requests waiting per level,
  preemptions, the server's queue time, the client's view beside the server's);
* ``apply``  (live): apply in order, wait until ready (the Deployment chapter's diagnosis),
  read the key back, clean up without touching the model data;
* ``lab``    (live): the local lab's settings (a small KV cache) and the planner's prediction;
* ``target`` (live): where requests go (a port-forward, the local engine, or nothing);
* ``load``   (live): the load test's settings per target, the run, the prediction to compare with;
* ``plots``  (presentation): the capstone's figures;
* ``report`` (presentation): the lab's text outputs (by-hand commands, tables, the cache in MiB).

Everything about vLLM itself (the engine, the client, ``/metrics``, the load test, vLLM's
benchmark) lives in :mod:`llmserve.serving`; this chapter strings it together.
"""
