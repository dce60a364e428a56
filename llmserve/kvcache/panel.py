"""ipywidgets panels of the KV-cache chapter (notebooks/kv-cache-lab.ipynb). Presentation.

* :func:`planner_panel`: vLLM's KV-cache sizing for one GPU, a thin wrapper
  over :func:`llmserve.kvcache.planner.plan`.
* :func:`paging_panel`: contiguous reservation vs paged blocks for a seeded
  mix of request lengths (:mod:`llmserve.kvcache.paging`).

Each panel renders its result when it is created (so the static HTML book
shows it) and re-renders on every change. A :class:`~llmserve.core.errors.CourseError`
raised by the logic below is shown as its message in the panel, never as a
traceback. The ``*_html`` functions hold everything but the widgets, so the
tests call them directly.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import replace

import ipywidgets as w

from llmserve.core.errors import CourseError, require
from llmserve.core.findings import COLORS, ERROR, OK, error_html
from llmserve.core.quantity import GIB
from llmserve.core.vllm import DEFAULT_GPU_MEMORY_UTILIZATION, GPU_DEFAULT_BLOCK_SIZE
from llmserve.kvcache import formula, paging, planner, plots, report
from llmserve.kvcache.formula import ModelShape

#: Presets of the planner panel (their weights: :func:`llmserve.kvcache.formula.weight_bytes`).
PLANNER_PRESETS: dict[str, ModelShape] = {
    "Qwen2.5-Coder-7B-Instruct-AWQ": formula.QWEN25_CODER_7B_AWQ,
    "Qwen2.5-Coder-7B-Instruct (bf16)": formula.QWEN25_CODER_7B,
    "Llama-2-7B (bf16)": formula.LLAMA2_7B,
    "custom": formula.QWEN25_CODER_7B,
}
#: KV-cache dtypes offered (vLLM's --kv-cache-dtype; "auto" = the model's dtype, bf16/fp16 here).
KV_DTYPES = {"auto (bf16/fp16, 2 bytes)": "auto", "fp8 (1 byte)": "fp8"}
#: The custom model's weight field starts at the AWQ checkpoint's size, in GiB.
AWQ_WEIGHTS_GIB = round(formula.weight_bytes(formula.QWEN25_CODER_7B_AWQ) / GIB, 2)

_STYLE = {"description_width": "200px"}
_LAYOUT = w.Layout(width="420px")
ERROR_TITLE = "Cannot compute this"


def _gib(b: int) -> str:
    return f"{b / GIB:,.2f} GiB"


def _box(level: str, text_html: str) -> str:
    """A verdict in the colours of core.findings (green: vLLM starts, red: it refuses)."""
    return f'<div style="border-left:4px solid {COLORS[level]};padding:6px 10px">{text_html}</div>'


def planner_html(gpu_memory_gib: float, gpu_memory_utilization: float, preset: str, kv_dtype: str,
                 max_model_len: int, custom: dict | None = None, log_text: str = "") -> str:
    """The planner panel's output as HTML; raises :class:`CourseError` on invalid input.

    ``custom`` (preset ``"custom"``): ``layers``, ``attention_heads``,
    ``kv_heads``, ``head_dim``, ``weights_gib``. ``log_text``: pasted vLLM
    start-up lines; the figures found (weights, activation peak, non-torch,
    CUDA graphs) replace the planner's estimates, and a logged
    ``KV cache size`` is shown next to the plan's.
    """
    model, weights_gib = _model_of(preset, custom)
    logged = planner.parse_startup_log(log_text) if log_text and log_text.strip() else {}
    weights_gib = logged.get("weights_gib", weights_gib)
    measured = {k: logged[k] for k in ("activation_peak_gib", "non_torch_gib", "cuda_graph_gib") if k in logged}
    p = planner.plan(gpu_memory_gib, gpu_memory_utilization, model, kv_dtype, max_model_len,
                     weights_gib=weights_gib, **measured)
    return _plan_table(p, kv_dtype) + _verdict(p) + _plan_notes(p, logged)


def _model_of(preset: str, custom: dict | None) -> tuple[ModelShape, float | None]:
    """The preset's model (its weights computed by the planner), or the custom one with its given weights."""
    require(preset in PLANNER_PRESETS, f"Unknown model preset {preset!r}.",
            f"Pick one of: {', '.join(PLANNER_PRESETS)}.")
    if preset != "custom":
        return PLANNER_PRESETS[preset], None
    c = dict(custom or {})
    for key in ("layers", "attention_heads", "kv_heads", "head_dim"):
        require(key in c, f"The custom model needs {key}.", "Fill in every field of the custom model.")
    model = ModelShape("custom", layers=c["layers"], attention_heads=c["attention_heads"],
                       kv_heads=c["kv_heads"], head_dim=c["head_dim"],
                       hidden_size=c["attention_heads"] * c["head_dim"], parameters=None)
    require(c.get("weights_gib") is not None, "The custom model needs its weight size.",
            "Enter the GiB vLLM logs as 'Model loading took X GiB' (or parameters × bytes ÷ 2**30).")
    return model, c["weights_gib"]


def _plan_table(p: planner.Plan, kv_dtype: str) -> str:
    """Budget, each part taken off it, then the blocks, tokens and concurrency."""
    rows = [("GPU memory × utilization (budget)",
             f"{p.gpu_memory_gib:g} GiB × {p.gpu_memory_utilization:g} = {_gib(p.budget)}", "")]
    for part in p.parts:
        rows.append((f"− {part.name}", _gib(part.bytes), f"{part.source}" + (f": {part.note}" if part.note else "")))
    rows.append(("= KV cache memory", _gib(p.kv_memory), ""))
    rows.append(("bytes per block", f"{p.bytes_per_block:,} B",
                 f"{p.block_size} tokens × {formula.kv_bytes_per_token(p.model, kv_dtype):,} B per token"))
    rows.append(("blocks", f"{p.num_blocks:,}", ""))
    rows.append(("tokens in the cache", f"{p.kv_tokens:,}", "as vLLM counts them"))
    rows.append((f"max concurrency at {p.max_model_len:,} tokens", f"{p.max_concurrency:.2f}×",
                 f"blocks ÷ {p.blocks_per_request:,} blocks per full-length request"))
    body = "".join(f"<tr><td>{html.escape(a)}</td><td style='text-align:right'><b>{html.escape(b)}</b></td>"
                   f"<td style='color:#666'>{html.escape(c)}</td></tr>" for a, b, c in rows)
    return f"<table>{body}</table>"


def _verdict(p: planner.Plan) -> str:
    if p.fits:
        return _box(OK, f"vLLM would start and log:<br><code>{html.escape(p.log_line())}</code>")
    return _box(ERROR, f"vLLM would refuse to start:<br><code>ValueError: {html.escape(p.message)}</code>")


def _plan_notes(p: planner.Plan, logged: dict) -> str:
    """Which parts are estimates, the logged figures beside the plan's, and the planner's notes."""
    extra = []
    if p.estimated_parts:
        extra.append(f"Estimated, not measured: {', '.join(p.estimated_parts)}. Paste the start-up log "
                     "to replace them with vLLM's own figures.")
    if "kv_cache_tokens" in logged:
        extra.append(f"Your log says <b>{logged['kv_cache_tokens']:,}</b> tokens "
                     f"(plan: {p.kv_tokens:,}).")
    if "max_model_len" in logged and logged["max_model_len"] != p.max_model_len:
        extra.append(f"The log's max_model_len is {logged['max_model_len']:,}, not {p.max_model_len:,}: "
                     "set the same value to compare.")
    extra.extend(html.escape(n) for n in p.notes)
    return "".join(f"<p style='color:#555;margin:4px 0'>{e}</p>" for e in extra)


def planner_panel(gpu_memory_gib: float = 24.0, preset: str = "Qwen2.5-Coder-7B-Instruct-AWQ",
                  max_model_len: int = 32768) -> w.VBox:
    """GPU memory, utilization, model, KV dtype, max_model_len (and an optional log) → vLLM's KV sizing."""
    mem = w.FloatText(value=gpu_memory_gib, description="GPU memory (GiB, total)", style=_STYLE, layout=_LAYOUT)
    util = w.FloatText(value=DEFAULT_GPU_MEMORY_UTILIZATION, step=0.01,
                       description="--gpu-memory-utilization", style=_STYLE, layout=_LAYOUT)
    model = w.Dropdown(options=list(PLANNER_PRESETS), value=preset, description="model", style=_STYLE,
                       layout=_LAYOUT)
    dtype = w.Dropdown(options=list(KV_DTYPES), description="--kv-cache-dtype", style=_STYLE, layout=_LAYOUT)
    mml = w.IntText(value=max_model_len, description="--max-model-len", style=_STYLE, layout=_LAYOUT)
    q = formula.QWEN25_CODER_7B
    custom = {
        "layers": w.IntText(value=q.layers, description="layers", style=_STYLE, layout=_LAYOUT),
        "attention_heads": w.IntText(value=q.attention_heads, description="attention heads", style=_STYLE,
                                     layout=_LAYOUT),
        "kv_heads": w.IntText(value=q.kv_heads, description="KV heads", style=_STYLE, layout=_LAYOUT),
        "head_dim": w.IntText(value=q.head_dim, description="head size", style=_STYLE, layout=_LAYOUT),
        "weights_gib": w.FloatText(value=AWQ_WEIGHTS_GIB, description="weights (GiB)", style=_STYLE,
                                   layout=_LAYOUT),
    }
    custom_box = w.VBox(list(custom.values()))
    log = w.Textarea(placeholder="Optional: paste vLLM start-up log lines (Model loading took … GiB, "
                                 "torch peak memory increase …, KV cache size …)",
                     layout=w.Layout(width="620px", height="90px"))
    out = w.HTML()

    def render(_=None):
        custom_box.layout.display = "" if model.value == "custom" else "none"
        try:
            out.value = planner_html(mem.value, util.value, model.value, KV_DTYPES[dtype.value], mml.value,
                                     {k: v.value for k, v in custom.items()}, log.value)
        except CourseError as err:
            out.value = error_html(err, ERROR_TITLE)

    for widget in (mem, util, model, dtype, mml, log, *custom.values()):
        widget.observe(render, names="value")
    render()
    title = w.HTML("<b>KV-cache capacity planner</b> (vLLM 0.32's method; "
                   "<code>llmserve.kvcache.planner.plan</code>)")
    return w.VBox([title, mem, util, model, custom_box, dtype, mml, log, out])


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode()


def paging_html(n_requests: int, max_model_len: int, budget_gib: float, prompt_median: float,
                output_median: float, seed: int = 0, dtype: str = "bf16", with_figure: bool = True) -> str:
    """The paging panel's output as HTML; raises :class:`CourseError` on invalid input."""
    require(isinstance(budget_gib, (int, float)) and budget_gib > 0,
            f"The KV budget must be a positive number of GiB, got {budget_gib!r}.",
            "Use e.g. the KV cache memory the planner computes (a few GiB on a 24 GiB GPU).")
    require(isinstance(n_requests, int) and 0 < n_requests <= 100_000,
            f"Number of requests must be 1…100000, got {n_requests!r}.", "Use e.g. 200.")
    mix = replace(paging.DEFAULT_MIX, prompt_median=prompt_median, output_median=output_median)
    lengths = paging.sample_lengths(n_requests, max_model_len, seed, mix)
    cmp = paging.compare(lengths, max_model_len, round(budget_gib * GIB), formula.QWEN25_CODER_7B, dtype)
    text = (f"<p>{html.escape(report.paging_summary(cmp))}</p>"
            f"<p>Contiguous: {cmp.contiguous.waste_fraction:.1%} of the reservation never filled, "
            f"<b>{cmp.fit_contiguous}</b> requests fit at once. Paged: {cmp.paged.waste_fraction:.1%} "
            f"never filled, <b>{cmp.fit_paged}</b> fit at once.</p>")
    if not with_figure:
        return text
    return text + f'<img src="data:image/png;base64,{_png(plots.paging(cmp))}" style="max-width:100%">'


def paging_panel(n_requests: int = 200, max_model_len: int = 8192, budget_gib: float = 8.0) -> w.VBox:
    """Contiguous reservation vs paged blocks, with sliders for the mix and the budget."""
    n = w.IntSlider(value=n_requests, min=10, max=1000, step=10, description="requests", style=_STYLE,
                    layout=_LAYOUT, continuous_update=False)
    mml = w.Dropdown(options=[2048, 4096, 8192, 16384, 32768], value=max_model_len, description="--max-model-len",
                     style=_STYLE, layout=_LAYOUT)
    budget = w.FloatSlider(value=budget_gib, min=1, max=64, step=0.5, description="KV budget (GiB)", style=_STYLE,
                           layout=_LAYOUT, continuous_update=False)
    pm = w.IntSlider(value=int(paging.DEFAULT_MIX.prompt_median), min=16, max=8000, step=16,
                     description="prompt median (tokens)", style=_STYLE, layout=_LAYOUT, continuous_update=False)
    om = w.IntSlider(value=int(paging.DEFAULT_MIX.output_median), min=16, max=4000, step=16,
                     description="output median (tokens)", style=_STYLE, layout=_LAYOUT, continuous_update=False)
    seed = w.IntText(value=0, description="seed", style=_STYLE, layout=_LAYOUT)
    out = w.HTML()

    def render(_=None):
        try:
            out.value = paging_html(n.value, mml.value, budget.value, pm.value, om.value, seed.value)
        except CourseError as err:
            out.value = error_html(err, ERROR_TITLE)

    for widget in (n, mml, budget, pm, om, seed):
        widget.observe(render, names="value")
    render()
    title = (f"<b>Reserve max_model_len, or page in blocks of {GPU_DEFAULT_BLOCK_SIZE}?</b> "
             "(Qwen2.5-Coder-7B, bf16)")
    return w.VBox([w.HTML(title),
                   n, mml, budget, pm, om, seed, out])


__all__ = ["planner_panel", "planner_html", "paging_panel", "paging_html", "PLANNER_PRESETS", "KV_DTYPES"]
