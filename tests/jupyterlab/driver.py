"""The course's JupyterLab (``scripts/lab.sh``) driven in Debian's Chromium, as a participant would.

:func:`start_lab` runs the script itself on a free loopback port, with its own
Jupyter folders (config, runtime, settings, workspaces) in a temporary folder so
that nothing of the developer's Jupyter leaks in and nothing of the test's stays.
Autosave is off there: the notebooks are run but never saved (they are committed
without outputs). :class:`Lab` is one notebook open in its own browser context;
:class:`Panel` is one ipywidgets panel of it, found by its title and driven
through its DOM controls, found by their labels.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import BrowserContext, Locator, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from llmserve.serving.engine import free_port
from tests.support import REPO, offline_env

#: A no-op set-up plus the server's start take seconds; set-up that has to install waits longer.
LAB_START_TIMEOUT_S = 240
STOP_TIMEOUT_S = 20
NOTEBOOK_OPEN_TIMEOUT_MS = 60_000
RUN_ALL_TIMEOUT_MS = 180_000
#: A panel reacts in well under a second; a panel that has not reacted by then never will.
REACT_TIMEOUT_MS = 8_000
TRACEBACK = "Traceback (most recent call last)"
_OPEN_LINE = re.compile(r"^lab: open (http://127\.0\.0\.1:(\d+)/lab/tree/notebooks\?token=(\w+))$", re.M)
_ERROR_MESSAGE = re.compile(r'"msg_type":\s*"error"')
_ERROR_NAME = re.compile(r'"ename":\s*"([^"]*)".*?"evalue":\s*"((?:[^"\\]|\\.)*)"', re.S)
_PROMPTS = ("() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]"
            ".map(p => p.textContent.trim())")
# Done when every code cell has its execution count; failed when an output holds a traceback.
_RUN_STATE = f"""tb => {{
    const prompts = ({_PROMPTS})();
    const failed = [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')]
        .find(o => o.textContent.includes(tb));
    if (failed) return {{failed: failed.textContent.slice(-3000)}};
    return prompts.length && prompts.every(p => /^\\[\\d+\\]:$/.test(p)) ? {{done: true}} : null;
}}"""


@dataclass
class LabServer:
    """A running ``scripts/lab.sh``: its printed URL, its process and its log."""
    process: subprocess.Popen
    log_path: Path
    runtime_dir: Path
    url: str = ""
    base: str = ""
    token: str = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, method: str, path: str) -> object:
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def shut_down_kernels(self) -> None:
        """End every session (and so its kernel): the next lab starts on a quiet machine."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def stop(self) -> None:
        """SIGTERM (Jupyter then shuts its kernels down), SIGKILL if it hangs, then any kernel left."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_S)
        # Kernels run in sessions of their own; ours are the ones whose connection file is in our runtime folder.
        for pid in _pids_mentioning(str(self.runtime_dir)):
            os.kill(pid, signal.SIGKILL)


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                pids.append(int(proc.name))
    return pids


def start_lab(tmp: Path, extra_args: list[str]) -> LabServer:
    """Run ``bash scripts/lab.sh --no-browser *extra_args`` offline; return once it answers."""
    dirs = {name: tmp / name for name in ("config", "data", "runtime", "settings", "workspaces", "ipython")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    docmanager = dirs["settings"] / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    env = offline_env()
    env.update(JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_DATA_DIR=str(dirs["data"]),
               JUPYTER_RUNTIME_DIR=str(dirs["runtime"]), JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
               JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]), IPYTHONDIR=str(dirs["ipython"]),
               COURSE_LAB_PORT=str(free_port()), COURSE_LAB_TOKEN=secrets.token_hex(16))
    log_path = tmp / "lab.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(["bash", "scripts/lab.sh", "--no-browser", *extra_args], cwd=REPO, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    server = LabServer(process, log_path, dirs["runtime"])
    try:
        _wait_until_answering(server, env["COURSE_LAB_TOKEN"])
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_answering(server: LabServer, token: str) -> None:
    deadline = time.monotonic() + LAB_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"scripts/lab.sh exited ({server.process.returncode}):\n{server.log()[-3000:]}")
        match = _OPEN_LINE.search(server.log())
        if match and match.group(3) == token:
            server.url, server.token = match.group(1), token
            server.base = f"http://127.0.0.1:{match.group(2)}"
            try:
                server.api("GET", "/api/status")
                return
            except (OSError, http.client.HTTPException):   # not up yet, or not JupyterLab on that port
                pass
        time.sleep(0.5)
    raise AssertionError(f"scripts/lab.sh did not answer within {LAB_START_TIMEOUT_S} s:\n{server.log()[-3000:]}")


@dataclass
class Lab:
    """One notebook open in JupyterLab, in a page of its own (the context's cache saves reloading the app)."""
    context: BrowserContext
    server: LabServer
    notebook: str
    external: list[str] = field(default_factory=list)
    kernel_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page = self.context.new_page()
        self.page.on("request", self._on_request)
        self.page.on("websocket", lambda ws: ws.on("framereceived", self._on_frame))

    def _on_request(self, request) -> None:
        if not request.url.startswith((self.server.base, "data:", "blob:")):
            self.external.append(request.url)

    def _on_frame(self, payload) -> None:
        text = payload if isinstance(payload, str) else payload.decode("utf-8", errors="replace")
        if _ERROR_MESSAGE.search(text):
            name = _ERROR_NAME.search(text)
            self.kernel_errors.append(f"{name.group(1)}: {name.group(2)}" if name else text[-2000:])

    def open(self) -> "Lab":
        """Open the notebook (nothing else: ``reset`` drops the restored workspace) once its kernel is idle."""
        self.page.goto(f"{self.server.base}/lab/tree/notebooks/{self.notebook}?token={self.server.token}&reset")
        # The status bar's "Idle" comes once the kernel answers; cells run before that are lost.
        status = self.page.locator('#jp-main-statusbar .jp-StatusBar-TextItem[title^="Change kernel"]')
        expect(status).to_contain_text(re.compile(r"\|\s*Idle"), timeout=NOTEBOOK_OPEN_TIMEOUT_MS)
        return self

    def prepend_code_cell(self, source: str) -> None:
        """A cell before the first one, in the open document only (needs --LabApp.expose_app_in_browser)."""
        self.page.evaluate("source => window.jupyterapp.shell.currentWidget.content.model.sharedModel"
                           ".insertCell(0, {cell_type: 'code', source})", source)

    def run_all(self) -> None:
        """Run > Run All Cells, as a participant would; fail with the first traceback if a cell fails."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:
            state = self.page.wait_for_function(_RUN_STATE, arg=TRACEBACK, timeout=RUN_ALL_TIMEOUT_MS,
                                                polling=250).json_value()
        except PlaywrightTimeout:
            prompts = self.page.evaluate(_PROMPTS)
            raise AssertionError(f"{self.notebook}: Run All did not finish in {RUN_ALL_TIMEOUT_MS // 1000} s; "
                                 f"prompts: {prompts}") from None
        assert "failed" not in state, f"{self.notebook}: a cell failed in JupyterLab:\n{state['failed']}"

    def first_output(self) -> str:
        return self.page.locator(".jp-Notebook .jp-CodeCell .jp-OutputArea-output").first.text_content()

    def text(self) -> str:
        return self.page.locator(".jp-Notebook").text_content()

    def panel(self, title: str) -> "Panel":
        return Panel(self, title)

    def assert_no_traceback(self, since: int) -> None:
        """No traceback in the notebook, none sent by the kernel, none in the server's log since ``since``."""
        assert TRACEBACK not in self.text(), f"{self.notebook}: a traceback is shown in the notebook"
        assert not self.kernel_errors, f"{self.notebook}: the kernel reported an error:\n{self.kernel_errors[0]}"
        log = self.server.log()[since:]
        assert TRACEBACK not in log, f"{self.notebook}: a traceback in the server's log:\n{log[-3000:]}"

    def close(self) -> None:
        self.page.close()
        self.server.shut_down_kernels()


class Panel:
    """One panel of a lab: the output whose widgets start with ``title``."""

    def __init__(self, lab: Lab, title: str) -> None:
        page = lab.page
        self.lab, self.title = lab, title
        self.root = page.locator(".jp-Notebook .jp-OutputArea-output").filter(
            has=page.locator(".widget-html-content", has_text=title))
        expect(self.root, f"no panel titled {title!r} in {lab.notebook}").to_have_count(1)

    def _row(self, label: str) -> Locator:
        row = self.root.locator(".widget-inline-hbox").filter(
            has=self.lab.page.locator("label.widget-label", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")))
        expect(row, f"{self.title}: no control labelled {label!r}").to_have_count(1)
        return row

    def control(self, label: str) -> Locator:
        """The input, select or textarea of the widget described as ``label``."""
        return self._row(label).locator("input, select, textarea").first

    def readout(self, label: str) -> str:
        """The value a slider shows beside it."""
        return self._row(label).locator(".widget-readout").inner_text().strip()

    def value(self, label: str) -> str:
        return self.control(label).input_value()

    def type(self, label: str, text: str) -> None:
        """Type ``text`` into a text or number box and press Enter (boxes that wait for it update then)."""
        box = self.control(label)
        box.fill(text)
        box.press("Enter")

    def choose(self, label: str, *options: str) -> None:
        """Pick ``options`` (by their visible text) in a dropdown or a multiple selection."""
        self.control(label).select_option(label=list(options))

    def press(self, button: str) -> None:
        self.root.locator("button", has_text=re.compile(rf"^\s*{re.escape(button)}\s*$")).click()

    def expect_shows(self, *parts: str, timeout_ms: int = REACT_TIMEOUT_MS) -> None:
        """Wait until the panel's text holds every one of ``parts`` (AssertionError if it never does)."""
        for part in parts:
            expect(self.root, f"{self.title}: never showed {part!r}").to_contain_text(
                " ".join(part.split()), timeout=timeout_ms)
