"""Beyond one box, part 2: observability and autoscaling (book/observability.md, notebooks/observability-lab.ipynb)
and the book's last chapter, the full stack (book/full-stack.md, notebooks/full-stack-lab.ipynb).

* ``catalogue``  (pure rules) the vLLM metrics to watch, the lab's PromQL, the dashboards' queries;
* ``alerts``     (pure rules) the recording rules and alerts, as data, from the rules file;
* ``scaling``    (pure rules) the HPA's formula, tolerance, stabilisation and rate limits; KEDA's 0↔1 step;
* ``workload``   (pure rules) the load that rises and falls;
* ``order``      (pure rules) the full stack's stages, in the order they are applied;
* ``prometheus`` (live) a real Prometheus on loopback: start, targets, queries;
* ``promtool``   (live) ``promtool check rules`` / ``test rules`` / ``check config``;
* ``load``       (live) the rising and falling load, run against the router;
* ``autoscaler`` (live) the control loop: the formula on a real query, real engines started and stopped;
* ``lab``        (live) the local lab: engines behind the router, Prometheus scraping them, runs of load;
* ``finale``     (live) the full stack applied in order, waited for, queried, loaded, cleaned up;
* ``plots``      (presentation) the chapter's figures.
"""
