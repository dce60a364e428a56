"""Measure the KV cache with torch and put each number next to its formula.

Used by the KV-cache chapter (notebooks/kv-cache-lab.ipynb, scripts/bench_kvcache.py).
Live: it allocates tensors on a torch device (CPU or CUDA) and times them.

Every function returns data (dataclasses), never prints. Byte measurements
pair ``measured`` (``numel × element_size`` of the K and V tensors the cache
really holds, or the CUDA allocator's delta) with ``formula``
(:func:`llmserve.kvcache.formula.kv_bytes`), and the ratio of the two.

* **bytes** (any device): :func:`measure_growth`, :func:`measure_tokens`,
  :func:`measure_layers`, :func:`measure_kv_heads`, :func:`measure_dtypes`;
  :func:`measure_allocator` (CUDA only).
* **time** (any device; small on a CPU): :func:`time_decode`, cached decoding
  against recomputing the whole context.
* **bandwidth** (meant for a GPU; runs on a CPU at small sizes for the tests):
  :func:`copy_bandwidth`, :func:`decode_attention`, :func:`measure_bandwidth`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Sequence

import torch

from llmserve.core.errors import InputError, require
from llmserve.kvcache import formula
from llmserve.kvcache.attention import (KVCache, TinyDecoder, attend, fp8_supported, tensor_bytes,
                                        tiny_shape, torch_dtype)
from llmserve.kvcache.formula import ModelShape

#: The CUDA caching allocator rounds every allocation up to a multiple of this
#: (``kMinBlockSize`` in c10/cuda/CUDACachingAllocator.cpp).
CUDA_ALLOCATION_ROUNDING = 512


# ------------------------------------------------------------------ bytes

@dataclass(frozen=True)
class BytesRow:
    """One cache measured against the formula."""

    label: str
    model: str
    layers: int
    kv_heads: int
    head_dim: int
    dtype: str
    tokens: int          # tokens per sequence
    batch: int
    measured: int        # bytes the K and V tensors hold (or the allocator delta)
    formula: int         # formula.kv_bytes(shape, batch × tokens, dtype)
    method: str = "numel × element_size"

    @property
    def ratio(self) -> float:
        return self.measured / self.formula if self.formula else float("nan")

    @property
    def equal(self) -> bool:
        return self.measured == self.formula


def _fill(shape: ModelShape, tokens: int, dtype: str, batch: int = 1, device: str = "cpu",
          chunk: int = 256) -> KVCache:
    """A growing cache holding ``tokens`` tokens of every layer, appended in chunks.

    The values are zeros: the bytes do not depend on them, and skipping the
    random generator keeps the Qwen-sized measurements fast.
    """
    cache = KVCache(shape, batch=batch, dtype=dtype, compute_dtype="fp32", device=device)
    done = 0
    while done < tokens:
        t = min(chunk, tokens - done)
        kv = torch.zeros(batch, shape.kv_heads, t, shape.head_dim, device=device)  # (B, Hkv, t, D)
        for layer in range(shape.layers):
            cache.append(layer, kv, kv)
        done += t
    return cache


def _row(label: str, shape: ModelShape, tokens: int, dtype: str, measured: int, batch: int = 1,
         method: str = "numel × element_size") -> BytesRow:
    return BytesRow(label=label, model=shape.name, layers=shape.layers, kv_heads=shape.kv_heads,
                    head_dim=shape.head_dim, dtype=dtype, tokens=tokens, batch=batch, measured=measured,
                    formula=formula.kv_bytes(shape, batch * tokens, dtype), method=method)


def measure_tokens(shape: ModelShape = formula.QWEN25_CODER_7B, tokens: Iterable[int] = (16, 256, 1024),
                   dtype: str = "bf16", batch: int = 1, device: str = "cpu") -> list[BytesRow]:
    """A cache of ``shape`` (e.g. Qwen2.5-Coder-7B's exact one) filled to each token count."""
    rows = []
    for n in tokens:
        cache = _fill(shape, n, dtype, batch, device)
        rows.append(_row(f"{n} tokens", shape, n, dtype, cache.nbytes, batch))
    return rows


def measure_layers(base: ModelShape = formula.QWEN25_CODER_7B, layers: Iterable[int] = (1, 7, 14, 28),
                   tokens: int = 256, dtype: str = "bf16", device: str = "cpu") -> list[BytesRow]:
    """Same heads and head size, different depth: the cache grows in proportion to layers."""
    rows = []
    for n in layers:
        shape = replace(base, name=f"{base.name} ({n} layers)", layers=n)
        rows.append(_row(f"{n} layers", shape, tokens, dtype, _fill(shape, tokens, dtype, device=device).nbytes))
    return rows


def attention_variants(base: ModelShape = formula.QWEN25_CODER_7B) -> list[tuple[str, ModelShape]]:
    """Multi-head (KV heads = heads), the model's own grouping, multi-query (1 KV head)."""
    h = base.attention_heads
    variants = [("MHA", replace(base, name=f"{base.name} as MHA", kv_heads=h))]
    if 1 < base.kv_heads < h:
        variants.append((f"GQA ({base.group_size} per KV head)", base))
    variants.append(("MQA", replace(base, name=f"{base.name} as MQA", kv_heads=1)))
    return variants


def measure_kv_heads(base: ModelShape = formula.QWEN25_CODER_7B, tokens: int = 256, dtype: str = "bf16",
                     device: str = "cpu") -> list[BytesRow]:
    """MHA vs GQA vs MQA at the same layers, heads and head size."""
    return [_row(label, shape, tokens, dtype, _fill(shape, tokens, dtype, device=device).nbytes)
            for label, shape in attention_variants(base)]


def available_cache_dtypes(device: str = "cpu") -> list[str]:
    """fp32 and bf16 always; fp8 (e4m3) where this torch can store it on ``device``."""
    dtypes = ["fp32", "bf16"]
    if fp8_supported(device)[0]:
        dtypes.append("fp8")
    return dtypes


def measure_dtypes(shape: ModelShape = formula.QWEN25_CODER_7B, tokens: int = 256,
                   dtypes: Sequence[str] | None = None, device: str = "cpu") -> list[BytesRow]:
    """The same cache stored in fp32, bf16 and fp8: bytes per value 4, 2, 1."""
    dtypes = list(dtypes) if dtypes is not None else available_cache_dtypes(device)
    return [_row(d, shape, tokens, d, _fill(shape, tokens, d, device=device).nbytes) for d in dtypes]


def measure_growth(model: TinyDecoder | None = None, prompt_tokens: int = 16, new_tokens: int = 48,
                   every: int = 8, seed: int = 0) -> list[BytesRow]:
    """Cache bytes while a real (tiny, random-weight) decoder generates tokens.

    One row after the prompt (prefill) and one every ``every`` generated tokens.
    """
    model = model or TinyDecoder(tiny_shape(), seed=seed)
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, model.vocab, (1, prompt_tokens), generator=g)      # (1, T)
    out = model.generate(prompt, new_tokens)
    rows = []
    for step, nbytes in enumerate(out.cache_bytes):
        if step % every and step != new_tokens:
            continue
        n = prompt_tokens + step
        label = "after prompt" if step == 0 else f"+{step} generated"
        rows.append(_row(label, model.shape, n, model.cache_dtype, nbytes))
    return rows


def allocator_rounded(shape: ModelShape, tokens: int, dtype: str, batch: int = 1,
                      rounding: int = CUDA_ALLOCATION_ROUNDING) -> int:
    """What the CUDA allocator's counter should grow by: each of the 2 × layers tensors rounded up."""
    per_tensor = batch * shape.kv_heads * tokens * shape.head_dim * formula.dtype_bytes(dtype)
    return 2 * shape.layers * (-(-per_tensor // rounding) * rounding)


def measure_allocator(shape: ModelShape = formula.QWEN25_CODER_7B, tokens: Iterable[int] = (16, 256, 1024),
                      dtype: str = "bf16", device: str = "cuda") -> list[BytesRow]:
    """Preallocate a cache on the GPU and read ``torch.cuda.memory_allocated`` before and after.

    The allocator counts whole 512-byte units per tensor; at these shapes each
    K or V tensor is a multiple of 512 bytes, so the delta equals the formula.
    Raises :class:`InputError` without CUDA.
    """
    require(torch.cuda.is_available() and torch.device(device).type == "cuda",
            "The CUDA allocator measurement needs a CUDA GPU; this machine has none.",
            "Run it on the GPU box (MODE.gpu is True there). On a CPU the tensor-byte "
            "measurements above are the same numbers without the allocator.")
    rows = []
    for n in tokens:
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        cache = KVCache(shape, dtype=dtype, compute_dtype="bf16", device=device, max_tokens=n)
        torch.cuda.synchronize(device)
        delta = torch.cuda.memory_allocated(device) - before
        rows.append(_row(f"{n} tokens", shape, n, dtype, delta, method="torch.cuda.memory_allocated delta"))
        del cache
    return rows


# ------------------------------------------------------------------ timing helpers

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: str | torch.device = "cpu", repeats: int = 5,
              warmup: int = 1) -> float:
    """Best (minimum) wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs.

    CUDA events on a GPU, ``time.perf_counter`` on a CPU. The minimum, as
    Python's ``timeit`` documentation advises: other processes on a shared
    machine can only add time to a run, never remove it.
    """
    device = torch.device(device)
    require(repeats >= 1, f"repeats must be ≥ 1, got {repeats}.", "Use repeats=5.")
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return min(times)


# ------------------------------------------------------------------ cached vs recompute

@dataclass(frozen=True)
class TimingRow:
    """Seconds to produce one more token when ``context`` tokens already exist."""

    context: int
    cached_s: float      # one decode step: 1 new token, attention over the cache
    recompute_s: float   # one forward pass over the whole context, no cache

    @property
    def speedup(self) -> float:
        return self.recompute_s / self.cached_s


@dataclass(frozen=True)
class TimingResult:
    rows: list[TimingRow]
    model: str
    device: str
    dtype: str
    torch_version: str
    threads: int
    repeats: int
    notes: list[str] = field(default_factory=list)

    def row(self, context: int) -> TimingRow:
        for r in self.rows:
            if r.context == context:
                return r
        raise InputError(f"No timing for a context of {context} tokens.",
                         f"Measured contexts: {[r.context for r in self.rows]}.")


def time_decode(contexts: Iterable[int] = (128, 256, 512, 1024, 2048), model: TinyDecoder | None = None,
                repeats: int = 5, device: str = "cpu", seed: int = 0, threads: int | None = 1) -> TimingResult:
    """Per-token time with the KV cache against recomputing the whole context.

    For each context length ``L``: the recompute step runs the model over all
    ``L`` tokens (generation without a cache does this at every step; only the
    last position's logits are used). The cached step feeds one token to a
    model whose preallocated cache already holds the prompt's ``L`` tokens
    (prefilled once, not timed); successive steps see ``L + 1``, ``L + 2`` …
    tokens, a drift of ``repeats`` tokens. Best of ``repeats`` runs after one
    warm-up each (see :func:`time_call`).

    ``threads``: CPU threads torch may use during the measurement (restored
    afterwards; ``None`` leaves the setting alone). One by default: on a
    small shared machine two OpenMP threads wait for each other whenever the
    system preempts one, which makes timings jump tenfold; one thread gives
    steady figures. It does not matter on a GPU.
    """
    old_threads = torch.get_num_threads()
    if threads is not None:
        require(isinstance(threads, int) and threads > 0, f"threads must be a positive whole number, got {threads!r}.",
                "Use threads=1 (steady on a shared machine) or None to keep torch's setting.")
        torch.set_num_threads(threads)
    try:
        return _time_decode(contexts, model, repeats, device, seed)
    finally:
        torch.set_num_threads(old_threads)


def _time_decode(contexts, model, repeats, device, seed) -> TimingResult:
    contexts = sorted(set(int(c) for c in contexts))
    require(contexts and contexts[0] > 0, f"contexts must be positive token counts, got {contexts}.",
            "Use e.g. (128, 256, 512, 1024, 2048).")
    model = model or TinyDecoder(tiny_shape(), max_positions=max(contexts) + repeats + 8, device=device,
                                 seed=seed)
    require(max(contexts) + repeats + 2 <= model.max_positions,
            f"The model has {model.max_positions} positions; contexts up to {max(contexts)} need more.",
            "Build the TinyDecoder with max_positions above the longest context.")
    dev = model.device
    g = torch.Generator().manual_seed(seed)
    rows = []
    for L in contexts:
        idx = torch.randint(0, model.vocab, (1, L), generator=g).to(dev)      # (1, L)
        nxt = idx[:, -1:]                                                     # (1, 1)
        recompute = time_call(lambda: model(idx), dev, repeats=repeats)
        cache = model.new_cache(max_tokens=L + repeats + 1)                  # preallocated: no copies
        model(idx, cache)                                                     # prefill (not timed)
        times = []
        for i in range(repeats + 1):                                          # step i sees L + i tokens
            t = time_call(lambda: model(nxt, cache), dev, repeats=1, warmup=0)  # (1, 1, vocab)
            if i:                                                             # the first step warms up
                times.append(t)
        rows.append(TimingRow(L, min(times), recompute))
    return TimingResult(rows, model.shape.name, str(dev), model.dtype_name, torch.__version__,
                        torch.get_num_threads(), repeats)


def cumulative_cost(result: TimingResult, step: int = 16) -> list[tuple[int, float, float]]:
    """Estimated total seconds to generate a sequence token by token up to each length.

    Sums per-token times, linearly interpolated between the measured contexts
    (and held at the first measurement below it): an estimate built from
    :func:`time_decode`, not a separate measurement. Returns
    ``(length, cached_total_s, recompute_total_s)`` every ``step`` tokens.
    """
    ctx = [r.context for r in result.rows]
    cached = [r.cached_s for r in result.rows]
    recomp = [r.recompute_s for r in result.rows]

    def interp(xs, ys, x):
        if x <= xs[0]:
            return ys[0]
        for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
            if x <= x1:
                return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        return ys[-1]

    out, tot_c, tot_r = [], 0.0, 0.0
    for n in range(1, ctx[-1] + 1):
        tot_c += interp(ctx, cached, n)
        tot_r += interp(ctx, recomp, n)
        if n % step == 0 or n == ctx[-1]:
            out.append((n, tot_c, tot_r))
    return out


# ------------------------------------------------------------------ bandwidth (GPU)

@dataclass(frozen=True)
class CopyResult:
    device: str
    nbytes: int          # size of the tensor copied
    seconds: float

    @property
    def bytes_per_s(self) -> float:
        """Bytes moved (read + written) per second."""
        return 2 * self.nbytes / self.seconds


def copy_bandwidth(nbytes: int = 1 << 30, device: str = "cuda", repeats: int = 10) -> CopyResult:
    """Time a device-to-device copy ``dst.copy_(src)``: the device's practical memory bandwidth."""
    require(nbytes >= 1024, f"nbytes={nbytes} is too small to time a copy.", "Use at least 1 MiB; 1 GiB on a GPU.")
    n = nbytes // 2
    src = torch.ones(n, dtype=torch.bfloat16, device=device)                  # (n,)
    dst = torch.empty_like(src)                                               # (n,)
    seconds = time_call(lambda: dst.copy_(src), device, repeats=repeats, warmup=2)
    return CopyResult(str(torch.device(device)), tensor_bytes(src), seconds)


@dataclass(frozen=True)
class DecodeAttentionRow:
    """One decode step of attention: ``batch`` queries of 1 token over ``context`` cached tokens."""

    method: str          # "sdpa" (enable_gqa) or "repeat" (repeat_interleave first)
    batch: int
    context: int
    heads: int
    kv_heads: int
    head_dim: int
    dtype: str
    cache_bytes: int     # K + V bytes the step must read at least once
    seconds: float
    copy_bytes_per_s: float | None = None

    @property
    def bytes_per_s(self) -> float:
        """Effective bandwidth: cache bytes ÷ time."""
        return self.cache_bytes / self.seconds

    @property
    def fraction_of_copy(self) -> float | None:
        return self.bytes_per_s / self.copy_bytes_per_s if self.copy_bytes_per_s else None


def decode_attention(batch: int, context: int, heads: int = 28, kv_heads: int = 4, head_dim: int = 128,
                     dtype: str = "bf16", method: str = "sdpa", device: str = "cuda", repeats: int = 10,
                     copy_bytes_per_s: float | None = None) -> DecodeAttentionRow:
    """Time one decode step of grouped attention over a cache of ``context`` tokens per sequence."""
    require(heads % kv_heads == 0, f"kv_heads={kv_heads} does not divide heads={heads}.",
            "Pick kv_heads from the divisors of heads.")
    dt = torch_dtype(dtype)
    q = torch.randn(batch, heads, 1, head_dim, device=device, dtype=dt)            # (B, H, 1, D)
    k = torch.randn(batch, kv_heads, context, head_dim, device=device, dtype=dt)   # (B, Hkv, S, D)
    v = torch.randn(batch, kv_heads, context, head_dim, device=device, dtype=dt)   # (B, Hkv, S, D)
    seconds = time_call(lambda: attend(q, k, v, past=context - 1, method=method), device,
                        repeats=repeats, warmup=2)
    return DecodeAttentionRow(method, batch, context, heads, kv_heads, head_dim, dtype,
                              tensor_bytes(k) + tensor_bytes(v), seconds, copy_bytes_per_s)


def measure_bandwidth(batches: Iterable[int] = (1, 16, 64), contexts: Iterable[int] = (1024, 8192),
                    methods: Iterable[str] = ("sdpa", "repeat"), device: str = "cuda",
                    copy_nbytes: int = 1 << 30, repeats: int = 10, dtype: str = "bf16",
                    heads: int = 28, kv_heads: int = 4, head_dim: int = 128
                    ) -> tuple[CopyResult, list[DecodeAttentionRow]]:
    """The copy bandwidth, then every (method, batch, context) decode step as a fraction of it."""
    copy = copy_bandwidth(copy_nbytes, device, repeats)
    rows = [decode_attention(b, c, heads, kv_heads, head_dim, dtype, m, device, repeats, copy.bytes_per_s)
            for m in methods for b in batches for c in contexts]
    return copy, rows


__all__ = ["BytesRow", "TimingRow", "TimingResult", "CopyResult", "DecodeAttentionRow",
           "measure_tokens", "measure_layers", "measure_kv_heads", "measure_dtypes", "measure_growth",
           "measure_allocator", "allocator_rounded", "attention_variants", "available_cache_dtypes",
           "time_call", "time_decode", "cumulative_cost", "copy_bandwidth",
           "decode_attention", "measure_bandwidth", "CUDA_ALLOCATION_ROUNDING"]
