"""Replicas and request routing (book/routing.md, notebooks/routing-lab.ipynb), and the fleet part 2 drives.

* ``policy``     (pure rules): what each routing policy of vllm-router does and keeps, and
  vLLM's prefix-cache block hashing (the chain of full-block hashes a cache hit is looked up by);
* ``workload``   (pure rules): the shared-prefix workload (tenants with long system prompts,
  rounds of questions) and whether a cache size makes routing matter for it;
* ``stats``      (pure rules): prefix-cache hit rates from ``/metrics`` counter deltas, per
  engine and in all, and how two runs compare;
* ``fleet``      (live): N real CPU vLLM engines behind a real ``vllm-router`` on loopback,
  grown and shrunk while running, every process stopped afterwards;
* ``experiment`` (live): the workload through the router with one policy, measured;
* ``plots``      (presentation): the runs side by side.

Nothing is imported here, so ``import llmserve.routing.policy`` stays light.
"""
