"""The KV-cache chapter's panels (llmserve/kvcache/panel.py).

The planner's numbers are tested in test_planner.py and test_planner_vs_vllm.py;
here: the panel renders at creation, reacts, and turns every invalid input into a
message (house rule: a CourseError's text, never a traceback).
"""
from __future__ import annotations

import html
import re

import pytest

from llmserve.core.errors import CourseError
from llmserve.kvcache import panel as panels


def text(h: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", h)))


@pytest.mark.parametrize("preset", list(panels.PLANNER_PRESETS))
def test_planner_html_for_every_preset(preset):
    custom = {"layers": 32, "attention_heads": 32, "kv_heads": 8, "head_dim": 128, "weights_gib": 15}
    out = text(panels.planner_html(80, 0.9, preset, "auto", 4096, custom=custom))
    assert "KV cache memory" in out and "max concurrency" in out
    assert "KV cache size:" in out      # vLLM's log line (fits on an 80 GiB card at 4k)


def test_planner_html_refusal_is_worded_like_vllm():
    # 24 GiB × 0.9 leaves a few GiB after Llama-2-7B's bf16 weights; 32k tokens × 512 KiB = 16 GiB does not fit.
    out = text(panels.planner_html(24, 0.9, "Llama-2-7B (bf16)", "auto", 32768))
    assert "refuse to start" in out and "To serve at least one request with the model" in out
    assert "(32768)" in out


def test_fp8_doubles_the_tokens():
    def tokens(dtype):
        m = re.search(r"KV cache size: ([\d,]+) tokens", text(panels.planner_html(24, 0.9,
                      "Qwen2.5-Coder-7B-Instruct-AWQ", dtype, 8192)))
        return int(m.group(1).replace(",", ""))
    assert abs(tokens("fp8") - 2 * tokens("auto")) <= 16


def test_log_figures_replace_estimates():
    log = "INFO Model loading took 5.35 GiB memory\nGPU KV cache size: 123,456 tokens"
    out = text(panels.planner_html(24, 0.9, "Qwen2.5-Coder-7B-Instruct-AWQ", "auto", 8192, log_text=log))
    assert "5.35 GiB" in out and "123,456" in out


@pytest.mark.parametrize("kwargs,match", [
    ({"gpu_memory_utilization": 1.2}, "gpu_memory_utilization"),
    ({"gpu_memory_utilization": 0}, "gpu_memory_utilization"),
    ({"gpu_memory_gib": -4}, "gpu_memory_gib"),
    ({"preset": "custom", "custom": {"layers": 28, "attention_heads": 28, "kv_heads": 5, "head_dim": 128,
                                     "weights_gib": 5}}, "does not divide"),
    ({"log_text": "hello"}, "No KV-cache figures"),
])
def test_planner_html_invalid_input_raises_course_error(kwargs, match):
    args = {"gpu_memory_gib": 24, "gpu_memory_utilization": 0.9, "preset": "Qwen2.5-Coder-7B-Instruct-AWQ",
            "kv_dtype": "auto", "max_model_len": 8192}
    args.update(kwargs)
    with pytest.raises(CourseError, match=match):
        panels.planner_html(**args)


def test_planner_panel_renders_at_creation_and_shows_errors_as_messages():
    panel = panels.planner_panel()
    out = panel.children[-1]
    assert "KV cache size" in out.value
    util = panel.children[2]
    util.value = 1.5
    assert "Cannot compute this" in out.value and "Traceback" not in out.value
    util.value = 0.9
    panel.children[3].value = "custom"
    custom_box = panel.children[4]
    assert custom_box.layout.display == ""
    custom_box.children[2].value = 3                      # 3 KV heads for 28 heads
    assert "does not divide" in out.value


def test_paging_panel_renders_and_reacts():
    panel = panels.paging_panel(n_requests=50)
    out = panel.children[-1]
    assert "data:image/png" in out.value and "requests fit at once" in text(out.value)
    assert "as if they were in memory at once" in text(out.value)
    panel.children[3].value = 1.0
    assert "fit" in out.value
    with pytest.raises(CourseError):
        panels.paging_html(10, 8192, 0, 100, 100)


def test_awq_preset_shows_its_weights_as_a_computed_estimate():
    out = text(panels.planner_html(24, 0.9, "Qwen2.5-Coder-7B-Instruct-AWQ", "auto", 8192))
    assert "− weights 5.19 GiB estimated: the AWQ checkpoint's tensors" in out
    assert "Estimated, not measured: weights, activation peak" in out
