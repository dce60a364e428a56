"""vLLM's own method for sizing the KV cache, as a pure calculator (no I/O).

Used by the KV-cache chapter (book/kv-cache.md, its planner panel) and the
capstone (book/stack.md). Pure rules. Checked line by line against the source of
the pinned release, vLLM 0.32.0 (V1 engine), file paths as in
https://github.com/vllm-project/vllm/tree/v0.32.0:

* ``vllm/v1/worker/utils.py`` ``request_memory`` (called by
  ``vllm/v1/worker/gpu_worker.py``): the instance's budget is
  ``ceil(total GPU memory × gpu_memory_utilization)`` — a fraction of the
  card's **total** memory, not of what is free.
* ``vllm/v1/worker/gpu_worker.py`` ``determine_available_memory``: KV memory =
  budget − non-KV memory measured in a profiling run (weights + activation peak
  + non-torch memory, ``memory_profiling`` in ``vllm/utils/mem_utils.py``) − the
  CUDA-graph estimate. With ``kv_cache_memory_bytes`` set, exactly that many
  bytes are used (the utilization is then not respected).
* ``vllm/v1/worker/cpu_worker.py`` ``determine_available_memory`` and
  ``vllm/platforms/cpu.py``: on the CPU backend ``VLLM_CPU_KVCACHE_SPACE`` (whole
  GiB) becomes ``kv_cache_memory_bytes = space × 2**30`` and is used as is; the
  CPU backend's default block size is 128 tokens (16 on GPUs,
  ``CacheConfig.DEFAULT_BLOCK_SIZE`` in ``vllm/config/cache.py``; both in
  :mod:`llmserve.core.vllm`).
* ``vllm/v1/core/kv_cache_utils.py``:
  ``get_kv_cache_config_from_groups``: ``num_blocks = available // bytes_per_block``
  where one block holds ``block_size`` tokens of every layer;
  ``get_kv_cache_configs`` / ``_check_enough_kv_cache_memory``: one block is
  held back (the null block) and one request of ``max_model_len`` tokens must
  fit in the rest, or vLLM refuses to start with a ``ValueError``;
  ``get_max_concurrency_for_kv_cache_config``: concurrency =
  ``num_blocks / ceil(max_model_len / block_size)``;
  ``get_kv_cache_capacity`` / ``update_kv_cache_capacity``: tokens =
  ``int(concurrency × max_model_len)``, logged as
  ``GPU KV cache size: N tokens, Maximum concurrency for M tokens per request: X.XXx``
  (``CPU KV cache size`` on the CPU backend).

So the reported token count is **not** ``num_blocks × block_size`` when
``max_model_len`` is not a multiple of the block size: a request's last block is
counted whole.

What the planner cannot know in advance (activation peak, non-torch memory,
CUDA-graph memory) is *estimated* and marked so; pass the figures vLLM logs at
start-up (``parse_startup_log``) to replace them with measured ones. Out of its
scope (one GPU, one full-attention cache group): tensor parallelism, sliding-window
and hybrid models, and an attention backend that picks another block size.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from llmserve.core.errors import InputError, require
from llmserve.core.quantity import GIB
from llmserve.core.vllm import DEFAULT_GPU_MEMORY_UTILIZATION, GPU_DEFAULT_BLOCK_SIZE
from llmserve.kvcache.formula import ModelShape, dtype_bytes, kv_bytes_per_token, weight_bytes
from llmserve.kvcache.paging import blocks_for

MIB = 1 << 20

#: Rough figures for a 7B model at vLLM's default batch settings on one GPU.
#: ESTIMATES, not measurements: vLLM measures them in its profiling run and logs
#: them; replace them with the logged figures (see ``parse_startup_log``).
ESTIMATED_ACTIVATION_PEAK_GIB = 1.5
ESTIMATED_NON_TORCH_GIB = 0.2
ESTIMATED_CUDA_GRAPH_GIB = 0.5


def size_text(num_bytes: int) -> str:
    """Bytes in GiB from 1 GiB up, else MiB, else bytes: the units of vLLM's own log lines
    (``core.quantity.format_bytes`` writes Kubernetes quantities such as ``2176Ki`` instead)."""
    if abs(num_bytes) >= GIB:
        return f"{num_bytes / GIB:,.2f} GiB"
    if abs(num_bytes) >= MIB:
        return f"{num_bytes / MIB:,.2f} MiB"
    return f"{num_bytes:,} B"


@dataclass(frozen=True)
class Part:
    """One slice of the memory budget: how big, and whether measured or estimated."""

    name: str
    bytes: int
    source: str   # "measured" (a figure you gave, e.g. from a log) or "estimated"
    note: str = ""

    @property
    def gib(self) -> float:
        return self.bytes / GIB

    @property
    def measured(self) -> bool:
        return self.source == "measured"


@dataclass(frozen=True)
class Plan:
    """Everything vLLM decides about the KV cache for one configuration.

    Byte fields are whole bytes; ``*_gib`` properties convert. ``budget`` is
    what this instance may use (GPU: total × utilization; with
    ``kv_cache_memory_bytes`` or on the CPU: the KV bytes given).
    """

    model: ModelShape
    kv_dtype: str
    max_model_len: int
    block_size: int
    device: str                      # "GPU" or "CPU" (as vLLM's log line says)
    budget: int
    weights: Part | None
    overhead: tuple[Part, ...]
    kv_memory: int
    bytes_per_block: int
    blocks_per_request: int
    num_blocks: int
    kv_tokens: int
    max_concurrency: float
    fits: bool
    message: str
    gpu_memory_gib: float | None = None
    gpu_memory_utilization: float | None = None
    notes: tuple[str, ...] = field(default=())
    kv_bytes_given: bool = False     # the KV bytes were given (CPU backend, --kv-cache-memory-bytes)

    @property
    def budget_gib(self) -> float:
        return self.budget / GIB

    @property
    def kv_memory_gib(self) -> float:
        return self.kv_memory / GIB

    @property
    def overhead_bytes(self) -> int:
        return sum(p.bytes for p in self.overhead)

    @property
    def parts(self) -> tuple[Part, ...]:
        """Weights then overhead parts (what the budget is spent on before the cache)."""
        return ((self.weights,) if self.weights else ()) + self.overhead

    @property
    def estimated_parts(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parts if not p.measured)

    def log_line(self) -> str:
        """The line vLLM would log at start-up (only printed by vLLM when ``fits``)."""
        return (f"{self.device} KV cache size: {self.kv_tokens:,} tokens, "
                f"Maximum concurrency for {self.max_model_len:,} tokens per request: "
                f"{self.max_concurrency:.2f}x")

    def summary(self) -> str:
        """The plan in a few lines. A GPU budget is in GiB throughout; a given cache size in
        the unit that shows it (a CPU lab's few MiB would read "0.00 GiB")."""
        lines = []
        if self.kv_bytes_given:
            lines.append(f"KV cache memory given: {size_text(self.kv_memory)} ({self.kv_memory:,} bytes)")
        else:
            lines.append(f"Budget: {self.gpu_memory_gib:g} GiB × {self.gpu_memory_utilization:g} "
                         f"= {self.budget_gib:.2f} GiB")
            lines += [f"  − {p.name}: {p.gib:.2f} GiB ({p.source})" for p in self.parts]
            lines.append(f"= KV cache memory: {self.kv_memory_gib:.2f} GiB")
        lines.append(f"  = {self.num_blocks:,} blocks × {self.bytes_per_block:,} B "
                     f"(a block holds {self.block_size} tokens of every layer)")
        lines.append(self.log_line() if self.fits else "Does not start: " + self.message)
        return "\n".join(lines)


def format_gib(num_bytes: int) -> str:
    """vLLM's ``format_gib`` (vllm/utils/mem_utils.py): ``str(round(b / GiB, 2))``."""
    return f"{round(num_bytes / GIB, 2)}"


def _check_common(model: ModelShape, kv_dtype: str, max_model_len: int, block_size: int) -> None:
    # ModelShape checks its own numbers (kv_heads dividing the heads) when it is built.
    require(isinstance(model, ModelShape), f"model must be a ModelShape, got {type(model).__name__}.",
            "Pass one of llmserve.kvcache.formula.PRESETS or build ModelShape(...) from config.json.")
    dtype_bytes(kv_dtype)  # raises InputError for an unknown dtype
    require(isinstance(max_model_len, int) and not isinstance(max_model_len, bool) and max_model_len > 0,
            f"max_model_len must be a whole number of tokens > 0, got {max_model_len!r}.",
            f"Use e.g. 8192, or the model's max_position_embeddings ({model.max_position_embeddings}), "
            "which vLLM uses when --max-model-len is not given.")
    require(isinstance(block_size, int) and not isinstance(block_size, bool) and block_size > 0,
            f"block_size must be a whole number of tokens > 0, got {block_size!r}.",
            "vLLM's default is 16 on GPUs (128 on the CPU backend).")


def _nonneg(name: str, value, fix: str) -> float | None:
    if value is None:
        return None
    require(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value >= 0, f"{name} must be a number of GiB ≥ 0, got {value!r}.", fix)
    return float(value)


def bytes_per_block(model: ModelShape, kv_dtype: str = "bf16", block_size: int = GPU_DEFAULT_BLOCK_SIZE) -> int:
    """Bytes one block costs across all layers: ``block_size × 2 × layers × kv_heads × head_dim × bytes``.

    vLLM sums each layer's ``page_size_bytes`` (``vllm/v1/kv_cache_interface.py``,
    ``AttentionSpec``) into ``bytes_per_block`` (``_get_kv_cache_bytes_per_block``).
    """
    return block_size * kv_bytes_per_token(model, kv_dtype)


def _too_small_message(check_memory: int, needed: int, max_model_len: int, bpb: int, block_size: int) -> str:
    """The wording of vLLM's ``_check_enough_kv_cache_memory`` (vllm/v1/core/kv_cache_utils.py)."""
    if check_memory <= 0:
        return ("No available memory for the cache blocks. "
                "Try increasing `gpu_memory_utilization` when initializing the engine "
                "(this flag also controls CPU memory reservation on the CPU "
                "backend, despite its name). "
                "See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ "
                "for more details.")
    # estimate_max_model_len: the binary search finds the largest length whose
    # whole blocks fit: floor(check / bytes_per_block) blocks of block_size tokens.
    estimated = min(max_model_len, (check_memory // bpb) * block_size)
    estimated_msg = ""
    if estimated > 0:
        estimated_msg = ("Based on the available memory, "
                         f"the estimated maximum model length is {estimated}. ")
    return (f"To serve at least one request with the model's max seq len "
            f"({max_model_len}), ({format_gib(needed)} GiB KV "
            f"cache is needed, which is larger than the available KV cache "
            f"memory ({format_gib(check_memory)} GiB). {estimated_msg}"
            f"Try increasing `gpu_memory_utilization` (which also controls "
            f"CPU memory on the CPU backend) or decreasing `max_model_len` "
            f"when initializing the engine. "
            f"See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ "
            f"for more details.")


def _blocks(model, kv_dtype, max_model_len, block_size, kv_memory):
    """num_blocks, concurrency, tokens, fits and message for ``kv_memory`` bytes of cache."""
    bpb = bytes_per_block(model, kv_dtype, block_size)
    per_request = blocks_for(max_model_len, block_size)   # vLLM's cdiv(max_model_len, block_size)
    num_blocks = max(kv_memory, 0) // bpb
    # get_kv_cache_configs reserves the null block before the admission check.
    check_memory = kv_memory - bpb
    needed = per_request * bpb
    fits = check_memory > 0 and needed <= check_memory
    message = "" if fits else _too_small_message(check_memory, needed, max_model_len, bpb, block_size)
    # get_max_concurrency_for_kv_cache_config and get_kv_cache_capacity, same operations in the same order.
    max_concurrency = num_blocks / per_request
    kv_tokens = int(max_concurrency * max_model_len)
    return bpb, per_request, num_blocks, max_concurrency, kv_tokens, fits, message


def _weights_part(model: ModelShape, weights_gib: float | None) -> Part:
    """The weights as given (measured), or computed from the model's shape (estimated)."""
    if weights_gib is not None:
        return Part("weights", round(weights_gib * GIB), "measured", "given")
    if model.weights == "awq":
        note = ("the AWQ checkpoint's tensors: 4-bit linear layers with fp16 scales and 4-bit zeros "
                "per 128 rows, the rest fp16 (vLLM logs its own figure: 'Model loading took X GiB')")
    else:
        note = f"{model.parameters:,} parameters × 2 bytes (bf16)" if model.parameters else ""
    return Part("weights", weight_bytes(model), "estimated", note)


def _overhead_parts(activation_peak_gib: float | None, non_torch_gib: float | None,
                    cuda_graph_gib: float | None) -> tuple[Part, ...]:
    """What the profiling run measures besides the weights: the given figures, else labelled estimates."""
    def part(name, value, estimate, note):
        if value is None:
            return Part(name, round(estimate * GIB), "estimated", note)
        return Part(name, round(value * GIB), "measured", "given")

    return (
        part("activation peak", activation_peak_gib, ESTIMATED_ACTIVATION_PEAK_GIB,
             "rough figure for a 7B model at default batch sizes; vLLM measures it in its profiling run"),
        part("non-torch memory", non_torch_gib, ESTIMATED_NON_TORCH_GIB,
             "CUDA context, NCCL, attention-backend buffers: rough figure"),
        part("CUDA graphs", cuda_graph_gib, ESTIMATED_CUDA_GRAPH_GIB,
             "rough figure; 0 with --enforce-eager"),
    )


def _check_gpu(gpu_memory_gib, gpu_memory_utilization, kv_cache_memory_bytes) -> None:
    require(isinstance(gpu_memory_utilization, (int, float)) and not isinstance(gpu_memory_utilization, bool)
            and 0 < gpu_memory_utilization <= 1,
            f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization!r}.",
            "It is a fraction of the GPU's total memory: use e.g. 0.9 "
            f"(vLLM 0.32's default is {DEFAULT_GPU_MEMORY_UTILIZATION}).")
    require(isinstance(gpu_memory_gib, (int, float)) and not isinstance(gpu_memory_gib, bool)
            and math.isfinite(gpu_memory_gib) and gpu_memory_gib > 0,
            f"gpu_memory_gib must be a positive number of GiB, got {gpu_memory_gib!r}.",
            "Use the card's total memory as nvidia-smi reports it, e.g. 79.6 for an H100 80GB "
            "(80 GB = 74.5 GiB is a common trap: nvidia-smi prints MiB).")
    require(kv_cache_memory_bytes is None
            or (isinstance(kv_cache_memory_bytes, int) and not isinstance(kv_cache_memory_bytes, bool)
                and kv_cache_memory_bytes > 0),
            f"kv_cache_memory_bytes must be a positive whole number of bytes, got {kv_cache_memory_bytes!r}.",
            "Use e.g. 8 * 2**30 for 8 GiB, or leave it empty to let vLLM size the cache.")


def plan(gpu_memory_gib: float, gpu_memory_utilization: float, model: ModelShape, kv_dtype: str,
         max_model_len: int, weights_gib: float | None = None, activation_peak_gib: float | None = None,
         non_torch_gib: float | None = None, cuda_graph_gib: float | None = None,
         block_size: int = GPU_DEFAULT_BLOCK_SIZE, kv_cache_memory_bytes: int | None = None) -> Plan:
    """Size the KV cache of one vLLM instance on one GPU, as vLLM 0.32 does.

    ``weights_gib`` defaults to the model's checkpoint size (:func:`~llmserve.kvcache.formula.weight_bytes`:
    ``parameters × 2`` bytes in bf16, the packed tensors for ``QWEN25_CODER_7B_AWQ``),
    marked as an estimate; pass the logged "Model loading took … GiB" to replace it.
    ``activation_peak_gib``, ``non_torch_gib`` and ``cuda_graph_gib`` default to
    labelled estimates; give the measured figures to make the plan exact
    (``cuda_graph_gib=0`` for ``--enforce-eager``). ``kv_cache_memory_bytes`` skips
    the budget (vLLM's ``--kv-cache-memory-bytes``).
    """
    _check_common(model, kv_dtype, max_model_len, block_size)
    _check_gpu(gpu_memory_gib, gpu_memory_utilization, kv_cache_memory_bytes)
    fix = "Enter a size in GiB ≥ 0, as vLLM logs it at start-up (or leave it empty for the estimate)."
    weights = _weights_part(model, _nonneg("weights_gib", weights_gib, fix))
    overhead = _overhead_parts(_nonneg("activation_peak_gib", activation_peak_gib, fix),
                               _nonneg("non_torch_gib", non_torch_gib, fix),
                               _nonneg("cuda_graph_gib", cuda_graph_gib, fix))
    # request_memory (vllm/v1/worker/utils.py): ceil(total × utilization).
    total = round(gpu_memory_gib * GIB)
    budget = math.ceil(total * gpu_memory_utilization)
    spent = weights.bytes + sum(p.bytes for p in overhead)
    notes = []
    if weights.bytes > total:
        notes.append("The weights alone are larger than the GPU's memory: loading fails with an "
                     "out-of-memory error before the cache is sized (use a quantized build or more GPUs).")
    if kv_cache_memory_bytes is not None:
        kv_memory = budget = kv_cache_memory_bytes
        notes.append("kv_cache_memory_bytes is set: vLLM skips profiling and ignores "
                     "gpu_memory_utilization (gpu_worker.determine_available_memory).")
        if spent + kv_memory > total:
            notes.append("Weights + overhead + this cache exceed the GPU's memory: expect an out-of-memory error.")
    else:
        kv_memory = budget - spent
    bpb, per_req, num_blocks, conc, tokens, fits, message = _blocks(
        model, kv_dtype, max_model_len, block_size, kv_memory)
    return Plan(model=model, kv_dtype=kv_dtype, max_model_len=max_model_len, block_size=block_size,
                device="GPU", budget=budget, weights=weights, overhead=overhead, kv_memory=kv_memory,
                bytes_per_block=bpb, blocks_per_request=per_req, num_blocks=num_blocks, kv_tokens=tokens,
                max_concurrency=conc, fits=fits, message=message, gpu_memory_gib=float(gpu_memory_gib),
                gpu_memory_utilization=float(gpu_memory_utilization), notes=tuple(notes),
                kv_bytes_given=kv_cache_memory_bytes is not None)


def cpu_kv_cache_bytes(kvcache_space_gib: int | None = None, kv_cache_memory_bytes: int | None = None) -> int:
    """KV bytes the CPU backend uses: ``VLLM_CPU_KVCACHE_SPACE`` (GiB) wins over ``--kv-cache-memory-bytes``.

    vllm/platforms/cpu.py sets ``kv_cache_memory_bytes = int(space) × GiB`` after
    the command-line value, so the environment variable overrides the flag;
    vllm/v1/worker/cpu_worker.py then returns exactly that many bytes.
    """
    if kvcache_space_gib is not None:
        require(isinstance(kvcache_space_gib, int) and not isinstance(kvcache_space_gib, bool)
                and kvcache_space_gib > 0,
                f"VLLM_CPU_KVCACHE_SPACE must be a whole number of GiB > 0, got {kvcache_space_gib!r}.",
                "vLLM reads it with int(): use 1, 2, 4 …, or use --kv-cache-memory-bytes for finer sizes.")
        return kvcache_space_gib * GIB
    require(kv_cache_memory_bytes is not None,
            "Neither VLLM_CPU_KVCACHE_SPACE nor kv_cache_memory_bytes was given.",
            "Give one of them (without either, vLLM sizes the CPU cache from --gpu-memory-utilization "
            "and the process's memory, which is not predictable in advance).")
    require(isinstance(kv_cache_memory_bytes, int) and not isinstance(kv_cache_memory_bytes, bool)
            and kv_cache_memory_bytes > 0,
            f"kv_cache_memory_bytes must be a positive whole number of bytes, got {kv_cache_memory_bytes!r}.",
            "Use e.g. 64 * 2**20 for 64 MiB.")
    return kv_cache_memory_bytes


def plan_from_kv_bytes(kv_cache_bytes: int, model: ModelShape, kv_dtype: str, max_model_len: int,
                       block_size: int = GPU_DEFAULT_BLOCK_SIZE, device: str = "GPU") -> Plan:
    """The plan once the KV bytes are known: the CPU backend's path, or ``--kv-cache-memory-bytes``.

    For the local CPU engine use ``device="CPU"`` and ``block_size=core.vllm.CPU_DEFAULT_BLOCK_SIZE``
    (unless ``--block-size`` was given), with ``kv_cache_bytes = cpu_kv_cache_bytes(...)``.
    """
    _check_common(model, kv_dtype, max_model_len, block_size)
    require(isinstance(kv_cache_bytes, int) and not isinstance(kv_cache_bytes, bool) and kv_cache_bytes >= 0,
            f"kv_cache_bytes must be a whole number of bytes ≥ 0, got {kv_cache_bytes!r}.",
            "Use e.g. 2**30 for 1 GiB.")
    require(device in ("GPU", "CPU"), f"device must be 'GPU' or 'CPU', got {device!r}.",
            "vLLM's log says 'GPU KV cache size' on CUDA and 'CPU KV cache size' on the CPU backend.")
    bpb, per_req, num_blocks, conc, tokens, fits, message = _blocks(
        model, kv_dtype, max_model_len, block_size, kv_cache_bytes)
    return Plan(model=model, kv_dtype=kv_dtype, max_model_len=max_model_len, block_size=block_size,
                device=device, budget=kv_cache_bytes, weights=None, overhead=(), kv_memory=kv_cache_bytes,
                bytes_per_block=bpb, blocks_per_request=per_req, num_blocks=num_blocks, kv_tokens=tokens,
                max_concurrency=conc, fits=fits, message=message, kv_bytes_given=True)


# ---------------------------------------------------------------- start-up logs

_FLOAT = r"(-?\d+(?:\.\d+)?)"
# Each key: patterns tried in order (vLLM 0.32 wording first, older wording after).
_PATTERNS: dict[str, tuple[re.Pattern, ...]] = {
    # vllm/v1/worker/gpu_model_runner.py: "Model loading took X GiB memory and S seconds"
    "weights_gib": (re.compile(r"Model loading took " + _FLOAT + r" ?GiB"),),
    # vllm/v1/worker/gpu_worker.py compile_or_warm_up_model (0.32): "Actual usage is A GiB for consumed
    # memory (weights + non-torch), B GiB for peak activation, and C GiB for CUDAGraph memory."
    "consumed_gib": (re.compile(r"Actual usage is " + _FLOAT + r" ?GiB for consumed memory"),),
    "activation_peak_gib": (re.compile(_FLOAT + r" ?GiB for peak activation"),
                            # vllm/utils/mem_utils.py MemoryProfilingResult (debug in 0.32, info before)
                            re.compile(r"torch peak memory increase: " + _FLOAT + r" ?GiB")),
    "cuda_graph_gib": (re.compile(_FLOAT + r" ?GiB for CUDAGraph memory"),
                       re.compile(r"CUDA graph pool memory: " + _FLOAT + r" ?GiB \(actual\)"),
                       re.compile(r"Graph capturing finished in \d+ secs?, took " + _FLOAT + r" ?GiB")),
    "non_torch_gib": (re.compile(r"non[- ]torch (?:forward )?(?:memory )?increase: " + _FLOAT + r" ?GiB"),),
    "non_kv_cache_gib": (re.compile(r"Total non KV cache memory: " + _FLOAT + r" ?GiB"),),
    # vllm/v1/worker/gpu_worker.py determine_available_memory
    "available_kv_gib": (re.compile(r"Available KV cache memory: " + _FLOAT + r" ?GiB"),
                         re.compile(r"reserved " + _FLOAT + r" ?GiB memory for KV Cache")),
    "requested_gib": (re.compile(r"Desired GPU memory utilization is \(\s*[\d.]+,\s*" + _FLOAT + r" ?GiB\)"),),
    "gpu_memory_utilization": (re.compile(r"Desired GPU memory utilization is \(\s*" + _FLOAT + r","),),
    "gpu_total_gib": (re.compile(r"Free memory on device \([\d.]+/" + _FLOAT + r" ?GiB\)"),),
}
# vllm/v1/worker/cpu_worker.py: "Explicitly set (a/b) GiB for KV cache" / "Auto set (a/b) GiB …"
_CPU_KV = re.compile(r"(?:Explicitly|Auto) set \(" + _FLOAT + r"/" + _FLOAT + r"\) GiB for KV cache")
# vllm/v1/core/kv_cache_utils.py update_kv_cache_capacity (one line in 0.32;
# older releases logged the two halves on separate lines).
_KV_SIZE = re.compile(r"\b(GPU|CPU|XPU|TPU|HPU)(?: \+ host)? KV cache size: ([\d,]+) tokens")
_CONCURRENCY = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: " + _FLOAT + r"x")


def parse_startup_log(text: str) -> dict:
    """Read the KV-cache figures out of a pasted vLLM start-up log (GPU or CPU backend).

    Returns a dict with whatever was found among: ``device`` ("GPU"/"CPU"),
    ``kv_cache_tokens``, ``max_model_len``, ``max_concurrency`` (the KV line),
    ``weights_gib``, ``consumed_gib``, ``activation_peak_gib``, ``non_torch_gib``,
    ``cuda_graph_gib``, ``non_kv_cache_gib``, ``available_kv_gib``,
    ``requested_gib``, ``gpu_memory_utilization``, ``gpu_total_gib`` (GPU), and
    ``cpu_kv_gib``, ``cpu_total_gib`` (CPU). Sizes are GiB as logged (2
    decimals). The last occurrence wins. Raises :class:`InputError` when the
    text holds none of them.
    """
    require(isinstance(text, str), f"Expected the log as text, got {type(text).__name__}.",
            "Paste the server's start-up output (kubectl logs deploy/vllm-qwen25-coder-7b).")
    out: dict = {}
    for key, patterns in _PATTERNS.items():
        for pattern in patterns:
            found = pattern.findall(text)
            if found:
                out[key] = float(found[-1])
                break
    cpu = _CPU_KV.findall(text)
    if cpu:
        out["cpu_kv_gib"], out["cpu_total_gib"] = float(cpu[-1][0]), float(cpu[-1][1])
    if "non_torch_gib" not in out and "consumed_gib" in out and "weights_gib" in out:
        # 0.32 logs consumed memory = weights + non-torch; the difference is the non-torch part.
        out["non_torch_gib"] = round(max(out["consumed_gib"] - out["weights_gib"], 0.0), 2)
    sizes = _KV_SIZE.findall(text)
    if sizes:
        out["device"], tokens = sizes[-1]
        out["kv_cache_tokens"] = int(tokens.replace(",", ""))
    conc = _CONCURRENCY.findall(text)
    if conc:
        out["max_model_len"] = int(conc[-1][0].replace(",", ""))
        out["max_concurrency"] = float(conc[-1][1])
    if not out:
        raise InputError("No KV-cache figures found in the text.",
                         "Paste the start-up log up to the line 'KV cache size: … tokens' "
                         "(it comes after the weights load and the memory profiling).")
    return out


def plan_inputs_from_log(parsed: dict) -> dict:
    """Turn ``parse_startup_log`` output into measured keyword arguments for :func:`plan`.

    vLLM 0.32 logs "A GiB for consumed memory (weights + non-torch), B GiB for
    peak activation, and C GiB for CUDAGraph memory"; its KV memory is
    ``requested − A − B`` where B already includes the CUDA-graph *estimate*
    (gpu_worker.determine_available_memory), so ``cuda_graph_gib`` is 0 here
    to avoid counting graphs twice. The log rounds to 0.01 GiB, so a plan made
    from it agrees with the logged cache size to about that precision.
    """
    # log field -> plan() argument
    names = {"weights_gib": "weights_gib", "non_torch_gib": "non_torch_gib",
             "activation_peak_gib": "activation_peak_gib", "gpu_total_gib": "gpu_memory_gib",
             "gpu_memory_utilization": "gpu_memory_utilization", "max_model_len": "max_model_len"}
    kwargs: dict = {arg: parsed[field] for field, arg in names.items() if field in parsed}
    if "activation_peak_gib" in parsed:
        kwargs["cuda_graph_gib"] = 0.0
    return kwargs


__all__ = ["ESTIMATED_ACTIVATION_PEAK_GIB", "ESTIMATED_NON_TORCH_GIB", "ESTIMATED_CUDA_GRAPH_GIB", "Part",
           "Plan", "plan", "plan_from_kv_bytes", "cpu_kv_cache_bytes", "bytes_per_block", "format_gib",
           "size_text", "parse_startup_log", "plan_inputs_from_log", "InputError"]
