"""Defaults of the pinned vLLM release (0.32.0), each with the source file that sets it.

Used wherever a chapter needs what vLLM does when a flag is not given: the planner
(kv-cache), the Service checker (the port), the system figure and the box check.
Checked against the installed 0.32.0 source by tests/core/test_vllm_defaults.py.
"""
from __future__ import annotations

#: The release every claim of the course is checked against (the image tag and the CPU wheel).
VERSION = "0.32.0"
#: The image the Deployment runs.
IMAGE = f"vllm/vllm-openai:v{VERSION}"

#: ``CacheConfig.DEFAULT_BLOCK_SIZE`` (vllm/config/cache.py): tokens per KV-cache block on GPUs.
GPU_DEFAULT_BLOCK_SIZE = 16
#: vllm/platforms/cpu.py sets 128 when the user gives no ``--block-size``.
CPU_DEFAULT_BLOCK_SIZE = 128
#: ``CacheConfig.gpu_memory_utilization`` default (vllm/config/cache.py).
DEFAULT_GPU_MEMORY_UTILIZATION = 0.92
#: The port the OpenAI-compatible server listens on without ``--port``
#: (vllm/entrypoints/launchers/cli_args.py, ``FrontendArgs.port``).
DEFAULT_PORT = 8000

#: The Kubernetes cluster DNS domain every distribution defaults to (kubelet ``clusterDomain``).
CLUSTER_DOMAIN = "cluster.local"
