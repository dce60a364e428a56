"""The box check's text report: fixes and links only under problems, and the counts per level."""
from __future__ import annotations

from llmserve.core import names
from llmserve.core.findings import ERROR, OK, SKIP, WARNING, Finding, Report
from llmserve.workshop import checks, live, report
from llmserve.world.mode import Mode


def _report() -> Report:
    return Report("GPU box", (Finding(OK, "fine", "never shown", check="a"),
                              Finding(ERROR, "broken", "do this", check="b", see="insufficient-gpu"),
                              Finding(SKIP, "offline", "not shown either", check="c")))


def test_report_lists_fix_and_link_for_problems_only():
    text = report.text(_report())
    assert "never shown" not in text and "not shown either" not in text and "fix: do this" in text
    assert "../book/troubleshooting.html#ts-insufficient-gpu" in text
    assert text.splitlines()[-1] == "1 ok  0 warning  1 error  1 skip"
    assert "troubleshooting.html#ts-insufficient-gpu" in report.text(_report(), from_dir="book")
    assert "../book/" not in report.text(_report(), from_dir="book")


def test_what_to_do_names_the_entry_to_read():
    advice = report.what_to_do(_report())
    assert advice.splitlines()[0] == "ERROR b: do this"
    assert "read: Pod Pending: Insufficient nvidia.com/gpu (../book/troubleshooting.html#ts-insufficient-gpu)" in advice
    quiet = Report("GPU box", (Finding(WARNING, "w", "fix w", check="d"), Finding(OK, "x", check="e")))
    assert report.what_to_do(quiet) == "WARNING d: fix w"
    assert report.what_to_do(Report("GPU box", ()), offline=True) == \
        "Nothing to fix here. (Offline: the cluster was not checked.)"


def test_counts_follow_the_levels_order():
    assert list(report.counts(_report())) == ["ok", "warning", "error", "skip"]


def test_every_line_has_a_by_hand_command_with_the_manifests_names():
    box = live.check_box(Mode("offline", "COURSE_MODE=offline is set", "cpu", "no GPU"))
    commands = report.by_hand()
    assert {f.check for f in box.findings} == set(commands)
    uid, gid = checks.pod_user(live.course_deployment())
    assert commands["model folder"] == f"sudo -u '#{uid}' -g '#{gid}' ls -l {names.system().host_model_dir}"
    assert len(report.by_hand_text(box).splitlines()) == len(box.findings)


def test_where_values_come_from_names_each_source():
    text = report.where_values_come_from()
    assert "securityContext" in text and "get_min_capability" in text and "vllm-project/vllm#22377" in text
    assert f"{checks.MIN_FREE_BYTES / 1e9:.1f} GB" in text
