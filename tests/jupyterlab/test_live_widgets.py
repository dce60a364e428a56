"""The labs as a participant opens them: ``scripts/lab.sh``, JupyterLab in Chromium, panels that react.

For every lab with an interactive panel: open it, Run All Cells, check the first
cell's banner (the mode and how to switch it) and that nothing says "needs a live
kernel" (only the static book does), then change each panel's controls through
the DOM and wait until the panel shows what the chapter's own functions compute
for those values. A bad value must show the error's message, never a traceback.
The bite tests run the same checks on a lab whose callbacks are disconnected or
raise, and expect them to fail.
"""
from __future__ import annotations

import ast
import copy
import os
from contextlib import contextmanager
from dataclasses import replace

import nbformat
import pytest
from playwright.sync_api import sync_playwright

from llmserve.core.errors import CourseError
from llmserve.core.names import system
from llmserve.core.quantity import GIB
from llmserve.deployment import budgets
from llmserve.kvcache import formula, paging, planner
from llmserve.service import rules as service_rules
from llmserve.storage import checks, live
from llmserve.storage import rules as storage_rules
from llmserve.world import manifests, mode
from tests.jupyterlab.driver import Lab, Panel, start_lab
from tests.support import CHROMIUM_ARGS
from tests.support import OFFLINE_ENV, REPO, chromium_path

pytestmark = pytest.mark.slow

#: What the bite test puts before the deployment lab's first cell: the probe budget's callbacks are
#: disconnected (its widgets render and take input, nothing reacts); the memory budget's raise an
#: error the panel does not catch. Only the panels' own observers (names="value") change: traitlets
#: registers a widget's internal handlers through the same method.
BREAK_THE_PANELS = """\
import ipywidgets
_observe = ipywidgets.Text.observe
def _broken(change):
    raise RuntimeError("a callback that fails")
def _observe_value(self, handler, names=None, type="change"):
    if names == "value" and self.description.startswith("startupProbe"):
        return
    if names == "value" and self.description.startswith("limits.memory"):
        handler = _broken
    _observe(self, handler, names=names, type=type)
ipywidgets.Text.observe = _observe_value
"""


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    """``bash scripts/lab.sh`` on a free port; stopped afterwards, also when a test fails."""
    # The bite tests add a cell to the open document; that needs the app object in the page.
    server = start_lab(tmp_path_factory.mktemp("jupyterlab"), ["--LabApp.expose_app_in_browser=True"])
    yield server
    server.stop()
    # The notebooks are committed without outputs: the runs must never have been saved.
    saved = [line for line in server.log().splitlines() if "Saving file at" in line]
    assert not saved, f"JupyterLab saved a notebook: {saved}"


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium, one context for every lab (its cache spares reloading JupyterLab's code)."""
    exe = chromium_path()
    if exe is None:
        pytest.fail("Debian's chromium is not installed: run scripts/setup.sh")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b.new_context(viewport={"width": 1400, "height": 1000})
        b.close()


@contextmanager
def opened(chromium, server, notebook: str, first_cell: str | None = None):
    """The lab open and run in a page of its own; closed (and its kernel shut down) afterwards."""
    lab = Lab(chromium, server, notebook)
    try:
        lab.open()
        if first_cell:
            lab.prepend_code_cell(first_cell)
        lab.run_all()
        yield lab
    finally:
        lab.close()


@pytest.fixture
def banner(monkeypatch) -> str:
    """What the first cell prints under the lab's environment (offline, tests.support.OFFLINE_ENV)."""
    for key, value in OFFLINE_ENV.items():
        monkeypatch.setenv(key, value)
    return mode.detect().describe()


def course_error(fn, *args, **kwargs) -> CourseError:
    """The CourseError that ``fn`` raises for a bad value (the test fails if it raises none)."""
    with pytest.raises(CourseError) as info:
        fn(*args, **kwargs)
    return info.value


def check_first_cell(lab: Lab, banner: str) -> None:
    """The first cell says the mode, why, and how to switch it, as in the book."""
    shown = " ".join(lab.first_output().split())
    assert shown == " ".join(banner.split()), f"{lab.notebook}: the first cell shows {shown!r}"
    for switch in ("KUBECONFIG", "COURSE_MODE", "COURSE_CONTEXT"):
        assert switch in shown, f"{lab.notebook}: the first cell does not say how to set {switch}"


def check_no_live_kernel_note(lab: Lab) -> None:
    """Only the static book says a panel needs a live kernel; here the kernel is live."""
    assert "live kernel" not in lab.text().lower(), (
        f"{lab.notebook} says the panels need a live kernel, in JupyterLab where they have one "
        "(the static book adds that note by itself: book/_ext/course_html.py)")


def check_bad_value(lab: Lab, panel: Panel, label: str, bad: str, err: CourseError, good: str) -> None:
    """``bad`` typed into ``label`` shows ``err``'s message, then ``good`` brings the panel back."""
    since = len(lab.server.log())
    panel.type(label, bad)
    panel.expect_shows(err.what, *([err.fix] if err.fix else []))
    lab.assert_no_traceback(since)
    panel.type(label, good)


# -- the storage lab ----------------------------------------------------------------------
def _verdict_texts(verdict) -> tuple[str, ...]:
    return (storage_rules.OUTCOME_WORDS[verdict.outcome], verdict.path, *verdict.reasons, *verdict.warnings)


def check_binding_explorer(lab: Lab) -> None:
    panel = lab.panel("Binding explorer")
    pv, claim = live.course_volume(), live.course_claim()
    assert panel.value("requests.storage") == claim["spec"]["resources"]["requests"]["storage"]
    resized = copy.deepcopy(claim)
    resized["spec"]["accessModes"] = ["ReadWriteOnce"]
    resized["spec"]["resources"]["requests"]["storage"] = "500Gi"
    unbound = copy.deepcopy(resized)
    del unbound["spec"]["volumeName"]
    verdicts = [storage_rules.binding_verdict(pv, c, "standard") for c in (claim, resized, unbound)]
    texts = [_verdict_texts(v) for v in verdicts]
    assert len(set(texts)) == 3, "each change must change the verdict"
    panel.choose("accessModes", "ReadWriteOnce")
    panel.type("requests.storage", "500Gi")
    panel.expect_shows(*texts[1])
    panel.type("volumeName", "")
    panel.expect_shows(*texts[2])
    bad = copy.deepcopy(unbound)
    bad["spec"]["resources"]["requests"]["storage"] = "lots"
    check_bad_value(lab, panel, "requests.storage", "lots",
                    course_error(storage_rules.binding_verdict, pv, bad, "standard"), "500Gi")
    panel.expect_shows(*texts[2])


def check_claim_checker(lab: Lab) -> None:
    panel = lab.panel("Claim checker")
    claim = live.read_object(panel.root.locator("textarea").input_value(), "PersistentVolumeClaim")
    report = checks.check_claim(claim, live.course_volume(), default_storage_class="standard")
    panel.choose("volume", f"{system().pv} with claimRef (course)")
    panel.press("Check")
    panel.expect_shows(report.headline(), *(f.what for f in report.findings))
    since = len(lab.server.log())
    broken = "kind: PersistentVolumeClaim\nspec: [not, a, mapping"
    err = course_error(live.read_object, broken, "PersistentVolumeClaim")
    panel.root.locator("textarea").fill(broken)
    panel.press("Check")
    panel.expect_shows(err.what)
    lab.assert_no_traceback(since)


def test_storage_lab_panels_react(chromium, lab_server, banner):
    with opened(chromium, lab_server, "storage-lab.ipynb") as lab:
        check_first_cell(lab, banner)
        check_binding_explorer(lab)
        check_claim_checker(lab)
        assert not lab.external, f"the lab fetched from outside: {lab.external}"
        check_no_live_kernel_note(lab)


# -- the deployment lab -------------------------------------------------------------------
PROBE_FIELDS = {"initial_delay_s": "startupProbe initialDelaySeconds", "period_s": "startupProbe periodSeconds",
                "failure_threshold": "startupProbe failureThreshold", "timeout_s": "startupProbe timeoutSeconds",
                "weights_gib": "weights to read (GiB)", "disk_mb_s": "disk read speed (MB/s)",
                "overhead_s": "engine start besides reading (s)"}
MEMORY_FIELDS = {"limit_gib": "limits.memory (GiB)", "process_gib": "vLLM processes (GiB, your estimate)",
                 "shm_used_gib": "/dev/shm in use (GiB)", "shm_size_limit_gib": "/dev/shm sizeLimit (GiB)",
                 "weights_gib": "weight files read (GiB)"}


def _first_change(budget_of, candidates: tuple[str, ...], before):
    """The first valid candidate whose verdict differs from ``before`` (the manifest may hold any of them)."""
    for value in candidates:
        try:
            after = budget_of(value)
        except CourseError:
            continue
        if after.verdict != before.verdict:
            return value, after
    raise AssertionError(f"none of {candidates} changes the verdict {before.verdict!r}")


def _probe(values: dict):
    return budgets.probe_budget(values["initial_delay_s"], values["period_s"], values["failure_threshold"],
                                values["timeout_s"], weights_gib=values["weights_gib"],
                                disk_mb_s=values["disk_mb_s"], overhead_s=values["overhead_s"])


def check_probe_budget(lab: Lab) -> None:
    panel = lab.panel("Probe budget")
    shown = {key: panel.value(label) for key, label in PROBE_FIELDS.items()}
    before = _probe(shown)
    period, after = _first_change(lambda p: _probe({**shown, "period_s": p}), ("2", "5", "10", "30", "60"), before)
    panel.type(PROBE_FIELDS["period_s"], period)
    panel.expect_shows(f"{after.window_s:.0f} s", after.verdict)
    check_bad_value(lab, panel, PROBE_FIELDS["period_s"], "ten",
                    course_error(_probe, {**shown, "period_s": "ten"}), period)
    panel.expect_shows(after.verdict)


def check_memory_budget(lab: Lab) -> None:
    panel = lab.panel("Memory budget")
    shown = {key: panel.value(label) for key, label in MEMORY_FIELDS.items()}
    before = budgets.memory_budget(**shown)
    limit, after = _first_change(lambda x: budgets.memory_budget(**{**shown, "limit_gib": x}),
                                 ("4", "8", "16", "64", "128"), before)
    panel.type(MEMORY_FIELDS["limit_gib"], limit)
    panel.expect_shows(f"{after.headroom_gib:g} GiB", after.verdict)
    check_bad_value(lab, panel, MEMORY_FIELDS["limit_gib"], "16Gi of RAM",
                    course_error(budgets.memory_budget, **{**shown, "limit_gib": "16Gi of RAM"}), limit)


def test_deployment_lab_panels_react(chromium, lab_server, banner):
    with opened(chromium, lab_server, "deployment-lab.ipynb") as lab:
        check_first_cell(lab, banner)
        check_probe_budget(lab)
        check_memory_budget(lab)
        assert not lab.external, f"the lab fetched from outside: {lab.external}"
        check_no_live_kernel_note(lab)


# -- the service lab ----------------------------------------------------------------------
def check_selector_checker(lab: Lab) -> None:
    panel = lab.panel("Selector checker")
    service = manifests.load_one("base/vllm-service.yaml")
    deployment = manifests.load_one("base/vllm-deployment.yaml")
    changed = copy.deepcopy(service)
    changed["spec"]["selector"] = service_rules.parse_selector("app=vllm")
    before = service_rules.selector_report(service, deployment)
    after = service_rules.selector_report(changed, deployment)
    assert before.ok and not after.ok, "the change must stop the traffic"
    panel.type("spec.selector", "app=vllm")
    panel.expect_shows(after.headline(), *(f.what for f in after.errors))
    check_bad_value(lab, panel, "spec.selector", "app", course_error(service_rules.parse_selector, "app"),
                    "app=vllm")
    panel.expect_shows(after.headline())


def test_service_lab_panel_reacts(chromium, lab_server, banner):
    with opened(chromium, lab_server, "service-lab.ipynb") as lab:
        check_first_cell(lab, banner)
        check_selector_checker(lab)
        assert not lab.external, f"the lab fetched from outside: {lab.external}"
        check_no_live_kernel_note(lab)


# -- the KV-cache lab ---------------------------------------------------------------------
def check_planner(lab: Lab) -> None:
    panel = lab.panel("KV-cache capacity planner")
    assert panel.value("model") == formula.QWEN25_CODER_7B_AWQ.name
    util = float(panel.value("--gpu-memory-utilization"))
    model = formula.QWEN25_CODER_7B_AWQ
    before = planner.plan(float(panel.value("GPU memory (GiB, total)")), util, model, "auto",
                          int(panel.value("--max-model-len")))
    after = planner.plan(48.0, util, model, "auto", 8192)
    assert after.num_blocks != before.num_blocks and after.fits
    panel.type("GPU memory (GiB, total)", "48")
    panel.type("--max-model-len", "8192")
    panel.expect_shows(f"{after.num_blocks:,}", f"{after.kv_tokens:,}", after.log_line())
    check_bad_value(lab, panel, "--max-model-len", "0",
                    course_error(planner.plan, 48.0, util, model, "auto", 0), "8192")
    check_bad_value(lab, panel, "GPU memory (GiB, total)", "-8",
                    course_error(planner.plan, -8.0, util, model, "auto", 8192), "48")
    panel.expect_shows(after.log_line())


def _paging(panel: Panel, **changes):
    values = {"n": int(panel.readout("requests")), "max_model_len": int(panel.value("--max-model-len")),
              "budget_gib": float(panel.readout("KV budget (GiB)")), "seed": int(panel.value("seed")),
              "prompt_median": float(panel.readout("prompt median (tokens)")),
              "output_median": float(panel.readout("output median (tokens)"))}
    values.update(changes)
    mix = replace(paging.DEFAULT_MIX, prompt_median=values["prompt_median"], output_median=values["output_median"])
    lengths = paging.sample_lengths(values["n"], values["max_model_len"], values["seed"], mix)
    return paging.compare(lengths, values["max_model_len"], round(values["budget_gib"] * GIB),
                          formula.QWEN25_CODER_7B, "bf16")


def check_paging_explorer(lab: Lab) -> None:
    """Its controls are sliders and a dropdown (every value valid): no bad value to type here."""
    panel = lab.panel("Reserve max_model_len")
    before, after = _paging(panel), _paging(panel, max_model_len=2048, seed=7)
    shown = (f"{after.contiguous.waste_fraction:.1%}", f"{after.paged.waste_fraction:.1%}")
    assert shown != (f"{before.contiguous.waste_fraction:.1%}", f"{before.paged.waste_fraction:.1%}")
    panel.choose("--max-model-len", "2048")
    panel.type("seed", "7")
    panel.expect_shows(*shown)


def test_kv_cache_lab_panels_react(chromium, lab_server, banner):
    with opened(chromium, lab_server, "kv-cache-lab.ipynb") as lab:
        check_first_cell(lab, banner)
        check_paging_explorer(lab)
        check_planner(lab)
        assert not lab.external, f"the lab fetched from outside: {lab.external}"
        check_no_live_kernel_note(lab)


# -- the checks bite ----------------------------------------------------------------------
def test_the_checks_fail_on_a_disconnected_or_raising_callback(chromium, lab_server):
    with opened(chromium, lab_server, "deployment-lab.ipynb", first_cell=BREAK_THE_PANELS) as lab:
        with pytest.raises(AssertionError, match="never showed"):
            check_probe_budget(lab)
        panel = lab.panel("Memory budget")
        since = len(lab_server.log())
        panel.type(MEMORY_FIELDS["limit_gib"], "8")
        with pytest.raises(AssertionError, match="error|traceback") as caught:
            for _ in range(40):  # the kernel's report comes a moment after the keystroke
                lab.assert_no_traceback(since)
                lab.page.wait_for_timeout(250)
        assert "a callback that fails" in str(caught.value)


#: The labs the tests above drive, each in its own test.
DRIVEN_LABS = {"storage-lab.ipynb", "deployment-lab.ipynb", "service-lab.ipynb", "kv-cache-lab.ipynb"}


def _imports_a_panel(source: str) -> bool:
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a cell with IPython syntax (%env …) imports nothing here
        return False
    return any(isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmserve.")
               and (node.module.endswith(".panel") or any(a.name == "panel" for a in node.names))
               for node in ast.walk(tree))


def test_every_lab_with_a_panel_is_driven():
    with_panels = {path.name for path in (REPO / "notebooks").glob("*.ipynb")
                   if any(cell.cell_type == "code" and _imports_a_panel(cell.source)
                          for cell in nbformat.read(path, as_version=4).cells)}
    assert with_panels == DRIVEN_LABS, "a lab with panels has no JupyterLab test here (or the list is stale)"


def test_lab_sh_prints_its_url_and_serves_the_course_kernel(lab_server):
    assert lab_server.url.endswith(f"/lab/tree/notebooks?token={lab_server.token}")
    specs = lab_server.api("GET", "/api/kernelspecs")
    assert list(specs["kernelspecs"]) == ["python3"] and specs["default"] == "python3"
    argv0 = specs["kernelspecs"]["python3"]["spec"]["argv"][0]
    assert os.path.realpath(argv0) == os.path.realpath(REPO / ".venv" / "bin" / "python"), argv0
    assert lab_server.api("GET", "/api/contents/notebooks")["type"] == "directory"
