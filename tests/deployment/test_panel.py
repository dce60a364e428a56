"""deployment.panel: the calculators start from the manifest, show bad input as a message; the progress line."""
from __future__ import annotations

from llmserve.deployment import panel
from llmserve.deployment.diagnose import Diagnosis
from llmserve.world import manifests

DEPLOYMENT = manifests.load_one("base/vllm-deployment.yaml")


def _boxes(box):
    return {b.description: b for b in box.children if hasattr(b, "description") and b.description}


def test_panels_render_and_show_errors():
    probe = panel.probe_panel()
    boxes = _boxes(probe)
    out = probe.children[-1]
    assert boxes["startupProbe failureThreshold"].value == str(DEPLOYMENT["spec"]["template"]["spec"]
                                                                ["containers"][0]["startupProbe"]["failureThreshold"])
    assert "start-up window" in out.value
    for bad, word in (("0", "greater than 0"), ("-3", "greater than 0"), ("fast", "must be a number")):
        boxes["disk read speed (MB/s)"].value = bad
        assert "Cannot compute this" in out.value and word in out.value
    memory = panel.memory_panel()
    mboxes = _boxes(memory)
    assert mboxes["limits.memory (GiB)"].value == "16"
    mboxes["limits.memory (GiB)"].value = "2"
    assert "OOM-KILLED" in memory.children[-1].value
    mboxes["limits.memory (GiB)"].value = "lots"
    assert "Cannot compute this" in memory.children[-1].value


def test_a_broken_manifest_is_a_message_not_a_traceback():
    box = panel.probe_panel({"kind": "Deployment", "metadata": {"name": "x"}, "spec": {}})
    assert len(box.children) == 1 and "Cannot compute this" in box.children[0].value


def test_progress_line_shows_each_status():
    out, progress = panel.progress_line("waiting for a Ready endpoint…")
    assert "waiting for a Ready endpoint" in out.value
    progress(12.4, "Pod a 10.0.0.1 on n: NOT ready\nsecond line")
    assert "12 s" in out.value and "NOT ready<br>second line" in out.value


def test_rollout_progress_is_coloured_by_the_diagnosis():
    out, progress = panel.rollout_progress()
    progress(5, Diagnosis("stuck", "No node has a free GPU", "Use Recreate"))
    stuck = out.value
    progress(6, Diagnosis("ready", "The Pod is Ready", ""))
    assert "[STUCK] No node has a free GPU" in stuck and "Fix: Use Recreate" in stuck
    assert stuck.split(";")[0] != out.value.split(";")[0]  # the bar's colour changed
