"""scripts/bench_kvcache.py only ever rewrites its own section of BENCHMARKS.md."""
from __future__ import annotations

import importlib.util

from tests.support import REPO

spec = importlib.util.spec_from_file_location("bench_kvcache", REPO / "scripts" / "bench_kvcache.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_creates_the_file_with_a_top_heading(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    bench.update(out, f"{bench.HEADING}\n\nfirst\n")
    text = out.read_text()
    assert text.startswith("# Benchmarks\n") and "first" in text


def test_replaces_only_its_own_section(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## Lead\n\nkeep me\n\n"
                   f"{bench.HEADING}\n\nold\n\n### sub\n\nold too\n\n## Other (stack)\n\nkeep me too\n")
    bench.update(out, f"{bench.HEADING}\n\nnew\n")
    text = out.read_text()
    assert "keep me\n" in text and "keep me too" in text
    assert "old" not in text and text.count(bench.HEADING) == 1 and "new" in text
    assert text.index("## Lead") < text.index(bench.HEADING) < text.index("## Other (stack)")
    bench.update(out, f"{bench.HEADING}\n\nnewer\n")       # idempotent: still one section
    assert out.read_text().count(bench.HEADING) == 1 and "newer" in out.read_text()


def test_section_on_a_cpu_says_the_gpu_part_was_not_measured(monkeypatch):
    # Timing is replaced (it is tested in test_measure.py); everything else runs for real.
    from llmserve.kvcache.measure import TimingResult, TimingRow
    fake = TimingResult([TimingRow(2048, 0.001, 0.1)], "tiny", "cpu", "fp32", "2.13", 1, 7)
    monkeypatch.setattr(bench.measure, "time_decode", lambda **_: fake)
    text = bench.section("cpu")
    assert text.startswith(bench.HEADING + "\n")
    assert "measured bytes equal the formula in every case" in text
    assert "as if they were in memory at once" in text          # the paging table explains its totals
    assert "Not measured: this machine has no CUDA GPU" in text and "H200" not in text
