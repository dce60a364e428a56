"""The API key's reach and the gateway that protects the rest (book/api-key.md, notebooks/api-key-lab.ipynb).

* ``routes``   (pure rules) what vLLM 0.32's key guards and what it leaves open;
* ``policy``   (pure rules) the gateway's nginx.conf, read from its ConfigMap: what it passes,
  checked against the route table, and rewritten for a local run;
* ``vllm_app`` (live) the routes the installed vLLM really registers, read in its own interpreter;
* ``gateway``  (live) that nginx.conf under the local ``nginx`` binary, on loopback;
* ``live``     (live) the probes: the same requests, with and without a key, as a Report.
"""
