"""A small decoder with a KV cache, written to be read.

Used by the KV-cache chapter (book/kv-cache.md, notebooks/kv-cache-lab.ipynb)
and measured by :mod:`llmserve.kvcache.measure`. Live: torch tensors on a device.

The shape of the model is a :class:`~llmserve.kvcache.formula.ModelShape`, the
same object the size formula takes, so the bytes this cache holds can be
compared with :func:`~llmserve.kvcache.formula.kv_bytes` one for one.

Shape names used in the comments::

    B   batch (sequences decoded together)
    T   new tokens in this call (the prompt at prefill, 1 when decoding)
    S   tokens held in the cache after this call (past + T)
    H   query heads            (shape.attention_heads)
    Hkv key/value heads        (shape.kv_heads; H // Hkv query heads share one)
    D   head size              (shape.head_dim)
    C   model width            (H * D)

Three kinds of attention share this code: multi-head (``Hkv == H``),
grouped-query (``1 < Hkv < H``) and multi-query (``Hkv == 1``). Only ``Hkv``
changes what the cache stores.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llmserve.core.errors import require
from llmserve.kvcache.formula import ModelShape

#: Course dtype names → torch dtypes. fp8 is e4m3 (vLLM's ``--kv-cache-dtype fp8``
#: means ``fp8_e4m3`` on NVIDIA GPUs).
TORCH_DTYPES = {
    "fp32": torch.float32, "float32": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16,
    "fp8": torch.float8_e4m3fn, "fp8_e4m3": torch.float8_e4m3fn,
}
#: Dtypes a matmul may run in; an fp8 cache is upcast to the compute dtype before use.
COMPUTE_DTYPES = ("fp32", "float32", "bf16", "bfloat16", "fp16", "float16")
#: How grouped-query attention is computed (see :func:`attend`).
GQA_METHODS = ("sdpa", "repeat")


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for a course dtype name (``"fp32"``, ``"bf16"``, ``"fp8"``)."""
    key = str(name).strip().lower()
    require(key in TORCH_DTYPES, f"Unknown dtype {name!r}.",
            f"Use one of: {', '.join(sorted(TORCH_DTYPES))}.")
    return TORCH_DTYPES[key]


def tensor_bytes(t: torch.Tensor) -> int:
    """Exact bytes of a tensor's elements: ``numel × element_size``."""
    return t.numel() * t.element_size()


class KVCache:
    """Keys and values of every layer for a batch of sequences.

    Per layer it holds ``K`` and ``V`` of shape ``(B, Hkv, S, D)``.

    Two ways to hold them, chosen by ``max_tokens``:

    * ``max_tokens=None`` (**grow**, the default): each call appends exactly the
      new tokens (``torch.cat``), so :attr:`nbytes` is exactly
      ``tokens × kv_bytes_per_token`` at every step. The price: every append
      copies the whole cache of that layer (``O(S)`` work per token). This is
      what the growth measurements use, because it shows the formula exactly.
    * ``max_tokens=N`` (**preallocate**): one ``(B, Hkv, N, D)`` buffer per
      layer up front; appends write into it without copying. :attr:`nbytes`
      is the reservation for ``N`` tokens whether they come or not, and
      :attr:`used_bytes` is what the tokens so far occupy. This is the
      "reserve ``max_model_len`` per request" scheme that paging replaces
      (see :mod:`llmserve.kvcache.paging`).

    ``dtype`` is the *storage* dtype. ``"fp8"`` stores ``torch.float8_e4m3fn``
    (1 byte a value, no scale factor: vLLM's default scale is 1.0 too) and
    :meth:`get` upcasts to ``compute_dtype`` for the matmul.
    """

    def __init__(self, shape: ModelShape, batch: int = 1, dtype: str = "fp32",
                 compute_dtype: str = "fp32", device: str | torch.device = "cpu",
                 max_tokens: int | None = None) -> None:
        require(isinstance(batch, int) and batch > 0, f"batch must be a positive whole number, got {batch!r}.",
                "Use batch=1 for one sequence.")
        require(max_tokens is None or (isinstance(max_tokens, int) and max_tokens > 0),
                f"max_tokens must be None (grow) or a positive whole number, got {max_tokens!r}.",
                "Pass max_tokens=None to grow the cache, or the longest sequence to preallocate it.")
        require(str(compute_dtype).lower() in COMPUTE_DTYPES,
                f"compute_dtype {compute_dtype!r} cannot run a matmul here.",
                "Use fp32 or bf16 for compute; fp8 is a storage format for the cache.")
        self.shape = shape
        self.batch = batch
        self.dtype_name = dtype
        self.dtype = torch_dtype(dtype)
        self.compute_dtype = torch_dtype(compute_dtype)
        self.device = torch.device(device)
        self.max_tokens = max_tokens
        self.length = 0                                      # S: tokens held so far
        B, Hkv, D = batch, shape.kv_heads, shape.head_dim
        n0 = max_tokens if max_tokens is not None else 0
        self.k = [torch.zeros(B, Hkv, n0, D, dtype=self.dtype, device=self.device)   # (B, Hkv, N or 0, D)
                  for _ in range(shape.layers)]
        self.v = [torch.zeros(B, Hkv, n0, D, dtype=self.dtype, device=self.device)   # (B, Hkv, N or 0, D)
                  for _ in range(shape.layers)]

    @property
    def preallocated(self) -> bool:
        return self.max_tokens is not None

    def append(self, layer: int, k_new: torch.Tensor, v_new: torch.Tensor) -> None:
        """Store ``T`` new tokens' keys and values of one layer.

        ``k_new``, ``v_new``: ``(B, Hkv, T, D)`` in any float dtype; converted to
        the storage dtype here. Call layers in order 0…L-1; the token count
        advances after the last layer.
        """
        B, Hkv, T, D = k_new.shape                          # (B, Hkv, T, D)
        require((B, Hkv, D) == (self.batch, self.shape.kv_heads, self.shape.head_dim),
                f"new keys have shape {tuple(k_new.shape)}, the cache holds "
                f"(B={self.batch}, Hkv={self.shape.kv_heads}, T, D={self.shape.head_dim}).",
                "Project keys and values with the cache's number of KV heads and head size.")
        start = self.length
        if self.preallocated:
            require(start + T <= self.max_tokens,
                    f"the cache was preallocated for {self.max_tokens} tokens; {start + T} do not fit.",
                    "Preallocate more tokens (max_tokens) or use a growing cache (max_tokens=None).")
            self.k[layer][:, :, start:start + T] = k_new.to(self.dtype)      # write into (B, Hkv, N, D)
            self.v[layer][:, :, start:start + T] = v_new.to(self.dtype)      # write into (B, Hkv, N, D)
        else:
            self.k[layer] = torch.cat([self.k[layer], k_new.to(self.dtype)], dim=2)  # (B, Hkv, S, D)
            self.v[layer] = torch.cat([self.v[layer], v_new.to(self.dtype)], dim=2)  # (B, Hkv, S, D)
        if layer == self.shape.layers - 1:
            self.length = start + T

    def get(self, layer: int, upto: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the first ``upto`` tokens of one layer, in the compute dtype."""
        k = self.k[layer][:, :, :upto].to(self.compute_dtype)   # (B, Hkv, S, D), upcast if fp8
        v = self.v[layer][:, :, :upto].to(self.compute_dtype)   # (B, Hkv, S, D)
        return k, v

    @property
    def nbytes(self) -> int:
        """Bytes of every K and V tensor this cache holds (``numel × element_size``)."""
        return sum(tensor_bytes(t) for t in self.k) + sum(tensor_bytes(t) for t in self.v)

    @property
    def used_bytes(self) -> int:
        """Bytes the tokens stored so far occupy (equals :attr:`nbytes` when growing)."""
        per_token_per_tensor = self.batch * self.shape.kv_heads * self.shape.head_dim * self.dtype.itemsize
        return 2 * self.shape.layers * self.length * per_token_per_tensor


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, past: int,
           method: str = "sdpa") -> torch.Tensor:
    """Causal attention of ``T`` new queries over ``S = past + T`` cached keys.

    ``q``: ``(B, H, T, D)``; ``k``, ``v``: ``(B, Hkv, S, D)``. Returns ``(B, H, T, D)``.

    * ``method="sdpa"``: ``scaled_dot_product_attention(..., enable_gqa=True)``
      lets each group of ``H // Hkv`` query heads read its one KV head in place.
    * ``method="repeat"``: ``repeat_interleave`` first copies every KV head
      ``H // Hkv`` times (a bigger tensor written and read again), then runs
      plain multi-head attention. Same numbers, more memory traffic.

    The causal mask is aligned to the *end*: new token ``i`` (position
    ``past + i``) sees cached positions ``0 … past + i``.
    """
    require(method in GQA_METHODS, f"Unknown attention method {method!r}.", f"Use one of {GQA_METHODS}.")
    B, H, T, D = q.shape                                      # (B, H, T, D)
    Hkv, S = k.shape[1], k.shape[2]                            # k: (B, Hkv, S, D)
    if T == 1:
        mask, causal = None, False                             # one new token sees every cached one
    elif past == 0:
        mask, causal = None, True                              # prefill: plain lower-triangular mask
    else:
        rows = torch.arange(T, device=q.device)[:, None] + past     # (T, 1) absolute positions of queries
        cols = torch.arange(S, device=q.device)[None, :]            # (1, S) positions of keys
        mask, causal = cols <= rows, False                           # (T, S) True = may attend
    if method == "repeat" and Hkv != H:
        k = k.repeat_interleave(H // Hkv, dim=1)               # (B, H, S, D): each KV head copied
        v = v.repeat_interleave(H // Hkv, dim=1)               # (B, H, S, D)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)  # (B, H, T, D)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                          enable_gqa=Hkv != H)  # (B, H, T, D)


class Attention(nn.Module):
    """Project, cache K and V, attend, project back (one layer)."""

    def __init__(self, shape: ModelShape, layer: int) -> None:
        super().__init__()
        self.shape, self.layer = shape, layer
        H, Hkv = shape.attention_heads, shape.kv_heads
        D = shape.head_dim
        C = H * D
        self.q_proj = nn.Linear(C, H * D, bias=False)  # C → H·D
        self.k_proj = nn.Linear(C, Hkv * D, bias=False)  # C → Hkv·D
        self.v_proj = nn.Linear(C, Hkv * D, bias=False)  # C → Hkv·D
        self.o_proj = nn.Linear(H * D, C, bias=False)  # H·D → C

    def heads(self, t: torch.Tensor, n: int) -> torch.Tensor:
        """(B, T, n·D) → (B, n, T, D): one slice per head."""
        B, T, _ = t.shape
        return t.view(B, T, n, self.shape.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, cache: KVCache | None,
                past: int, method: str) -> torch.Tensor:
        B, T, C = x.shape  # (B, T, C)
        H, Hkv = self.shape.attention_heads, self.shape.kv_heads
        q = self.heads(self.q_proj(x), H)  # (B, H, T, D)
        k = self.heads(self.k_proj(x), Hkv)  # (B, Hkv, T, D)
        v = self.heads(self.v_proj(x), Hkv)  # (B, Hkv, T, D)
        if cache is not None:
            cache.append(self.layer, k, v)  # now S = past + T
            k, v = cache.get(self.layer, past + T)  # (B, Hkv, S, D)
        y = attend(q, k, v, past=past, method=method)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, H·D)
        return self.o_proj(y)  # (B, T, C)


class Block(nn.Module):
    """Pre-norm decoder block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, shape: ModelShape, layer: int) -> None:
        super().__init__()
        C = shape.attention_heads * shape.head_dim
        self.norm1 = nn.LayerNorm(C)
        self.attn = Attention(shape, layer)
        self.norm2 = nn.LayerNorm(C)
        self.mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C))

    def forward(self, x: torch.Tensor, cache: KVCache | None, past: int, method: str) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cache, past, method)  # (B, T, C)
        return x + self.mlp(self.norm2(x))                      # (B, T, C)


@dataclass(frozen=True)
class Generation:
    """What :meth:`TinyDecoder.generate` returns."""

    tokens: torch.Tensor          # (B, prompt + new) token ids
    cache: KVCache | None         # the cache after the last step (None when recomputing)
    cache_bytes: list[int]        # cache.nbytes after the prompt and after each new token


class TinyDecoder(nn.Module):
    """A decoder-only transformer with random weights: tokens in, next-token logits out.

    Positions are learned absolute embeddings, so a decoding step must know
    where it is: the new token's position is the number of tokens already
    cached (``past``). The output is gibberish by design; the point is the
    shapes, the bytes and the time.
    """

    def __init__(self, shape: ModelShape, vocab: int = 256, max_positions: int = 4096,
                 dtype: str = "fp32", cache_dtype: str | None = None,
                 device: str | torch.device = "cpu", method: str = "sdpa", seed: int = 0) -> None:
        super().__init__()
        require(str(dtype).lower() in COMPUTE_DTYPES, f"Model dtype {dtype!r} cannot run a matmul.",
                "Use fp32 or bf16 for the model; set cache_dtype='fp8' to store the cache in fp8.")
        require(method in GQA_METHODS, f"Unknown attention method {method!r}.", f"Use one of {GQA_METHODS}.")
        torch.manual_seed(seed)
        self.shape, self.vocab, self.max_positions = shape, vocab, max_positions
        self.dtype_name, self.cache_dtype = dtype, cache_dtype or dtype
        self.method = method
        C = shape.attention_heads * shape.head_dim
        self.tok_emb = nn.Embedding(vocab, C)                   # token id → (C,)
        self.pos_emb = nn.Embedding(max_positions, C)           # position → (C,)
        self.blocks = nn.ModuleList(Block(shape, i) for i in range(shape.layers))
        self.norm = nn.LayerNorm(C)
        self.head = nn.Linear(C, vocab, bias=False)             # C → vocab logits
        self.to(device=device, dtype=torch_dtype(dtype))
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def new_cache(self, batch: int = 1, max_tokens: int | None = None) -> KVCache:
        """An empty cache for this model (grows unless ``max_tokens`` is given)."""
        return KVCache(self.shape, batch=batch, dtype=self.cache_dtype, compute_dtype=self.dtype_name,
                       device=self.device, max_tokens=max_tokens)

    @torch.no_grad()
    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits for every position of ``idx`` ``(B, T)``: ``(B, T, vocab)``.

        With a cache, ``idx`` holds only the *new* tokens; their keys and values
        are appended and attention reads the whole cache. Without one, ``idx``
        must be the whole context and everything is recomputed.
        """
        B, T = idx.shape                                         # (B, T)
        past = cache.length if cache is not None else 0
        require(past + T <= self.max_positions,
                f"{past + T} tokens exceed this model's {self.max_positions} positions.",
                "Build the TinyDecoder with a larger max_positions.")
        pos = torch.arange(past, past + T, device=idx.device)   # (T,) absolute positions
        x = self.tok_emb(idx) + self.pos_emb(pos)               # (B, T, C)
        for block in self.blocks:
            x = block(x, cache, past, self.method)              # (B, T, C)
        return self.head(self.norm(x))                          # (B, T, vocab)

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, new_tokens: int, use_cache: bool = True,
                 max_tokens: int | None = None) -> Generation:
        """Greedy decoding of ``new_tokens`` tokens after ``prompt`` ``(B, T)``.

        ``use_cache=True``: one prefill over the prompt, then one token per step
        (each step's input is ``(B, 1)``). ``use_cache=False``: every step runs
        the whole context again (input ``(B, T + step)``).
        """
        idx = prompt.to(self.device)                             # (B, T)
        if not use_cache:
            for _ in range(new_tokens):
                logits = self(idx)                               # (B, T', vocab): all positions again
                nxt = logits[:, -1].argmax(-1, keepdim=True)     # (B, 1)
                idx = torch.cat([idx, nxt], dim=1)               # (B, T' + 1)
            return Generation(idx, None, [])
        cache = self.new_cache(batch=idx.shape[0], max_tokens=max_tokens)
        logits = self(idx, cache)                                # (B, T, vocab): prefill fills the cache
        sizes = [cache.nbytes]
        for _ in range(new_tokens):
            nxt = logits[:, -1].argmax(-1, keepdim=True)         # (B, 1)
            idx = torch.cat([idx, nxt], dim=1)                   # (B, T' + 1)
            logits = self(nxt, cache)                            # (B, 1, vocab): only the new token
            sizes.append(cache.nbytes)
        return Generation(idx, cache, sizes)


def tiny_shape(layers: int = 2, heads: int = 4, kv_heads: int = 2, head_dim: int = 32,
               name: str | None = None) -> ModelShape:
    """A small :class:`ModelShape` for CPU demos (width = heads × head_dim)."""
    return ModelShape(name or f"tiny-L{layers}-H{heads}-KV{kv_heads}-D{head_dim}", layers=layers,
                      attention_heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                      hidden_size=heads * head_dim, max_position_embeddings=4096)


def fp8_supported(device: str | torch.device = "cpu") -> tuple[bool, str]:
    """Whether this torch can store and upcast ``float8_e4m3fn`` on ``device``, and why."""
    if not hasattr(torch, "float8_e4m3fn"):
        return False, f"torch {torch.__version__} has no float8_e4m3fn dtype"
    try:
        x = torch.ones(4, device=device).to(torch.float8_e4m3fn)
        ok = bool((x.to(torch.float32) == 1).all())
    except (RuntimeError, TypeError) as err:                    # pragma: no cover - depends on the build
        return False, f"float8_e4m3fn does not work on {device}: {err}"
    return ok, f"float8_e4m3fn stores and upcasts on {device} (torch {torch.__version__})"


__all__ = ["KVCache", "Attention", "Block", "TinyDecoder", "Generation", "attend", "tiny_shape",
           "torch_dtype", "tensor_bytes", "fp8_supported", "TORCH_DTYPES", "GQA_METHODS"]

