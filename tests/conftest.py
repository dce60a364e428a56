"""Fixtures shared by several folders (the built book and the router fleet, each started once per
session), the order the tests run in, and the markers' skip rules.

The strict book build (every lab executed: most of a run's time) starts in the background as
soon as the tests are collected, and keeps the CPU first: the test process lowers its own
priority right after starting it. Meanwhile the tests that do not need the book run; then the
book's tests, which wait for the build.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import (BUILD_TIMEOUT_S, KEYED_ENGINE_KEY, KEYED_ENGINE_KV_BYTES, KEYED_ENGINE_MAX_MODEL_LEN, REPO,
                           BookBuild, build_command, missing_tool, offline_env, refuses_connections)


class _BackgroundBuild:
    """The strict build, started when collection ends, while the tests that do not need the
    machine to themselves run (most of the build's time is notebooks waiting on engines).

    Its own process group, so that a run that ends early (``-x``, Ctrl-C, a crash) stops the
    build and the kernels and engines it started (:meth:`stop`, from ``pytest_sessionfinish``).
    """

    def __init__(self, out: Path) -> None:
        self.out, self.result = out, None
        self.log = open(out / "build.log", "w+", encoding="utf-8")
        self.proc = subprocess.Popen(build_command(REPO, out), stdout=self.log, stderr=subprocess.STDOUT,
                                     text=True, env=offline_env(), start_new_session=True)

    def wait(self) -> BookBuild:
        if self.result is None:
            try:
                code = self.proc.wait(timeout=BUILD_TIMEOUT_S - 60)
            except subprocess.TimeoutExpired:
                self.stop()
                code = -1
            self.log.seek(0)
            self.result = BookBuild(self.out, code, self.log.read())
        return self.result

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        # The engines a lab starts run in process groups of their own (llmserve.serving.engine), and
        # a killed kernel cannot stop them: signal every group under the build, found before it dies.
        below = descendants(self.proc.pid)
        groups = {self.proc.pid} | {g for g in map(_group_of, below) if g}
        for sig, grace_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
            for group in groups:
                try:
                    os.killpg(group, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and (self.proc.poll() is None or any(map(_alive, below))):
                time.sleep(0.2)
            if self.proc.poll() is not None and not any(map(_alive, below)):
                return


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (children, their children, …), read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _alive(pid: int) -> bool:
    """Running (a zombie no one reaps yet counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


_BUILD = pytest.StashKey[_BackgroundBuild]()
#: How much lower the tests' priority is than the build's (os.nice; it cannot be raised back
#: without privileges, which does not matter once the build is done and nothing competes).
BESIDE_THE_BUILD_NICENESS = 10


def _needs_the_book(item) -> bool:
    return bool({"book_build", "built_book"} & set(getattr(item, "fixturenames", ())))


def pytest_collection_finish(session):
    if (session.config.option.collectonly or os.environ.get("COURSE_BUILT_BOOK")
            or not any(_needs_the_book(i) for i in session.items)):
        return
    out = session.config._tmp_path_factory.mktemp("book")
    session.config.stash[_BUILD] = _BackgroundBuild(out)
    # The build's labs time things (a cold start, an autoscaler's reaction): they get the CPU first.
    # The tests that run beside it, and the engines they start, take what the build leaves idle.
    os.nice(BESIDE_THE_BUILD_NICENESS)



def pytest_configure(config):
    # A run stopped with SIGTERM (a CI timeout, `kill`) ends as Ctrl-C does: the session's
    # finish hook then stops the background build and the engines under it.
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionfinish(session):
    build = session.config.stash.get(_BUILD, None)
    if build is not None:
        build.stop()


@pytest.fixture(scope="session")
def book_build(request) -> BookBuild:
    """The whole book, built once per run (every notebook executed there, once); never fails by itself.

    The build starts in the background when collection ends; the notebook tests read the
    notebooks it executed, so each notebook runs once per test run and still fails with its
    own message.
    """
    reuse = os.environ.get("COURSE_BUILT_BOOK")  # a developer's shortcut (a --path-output folder), never set in CI
    if reuse:
        root = Path(reuse)
        return BookBuild(root, 0, (root / "build.log").read_text() if (root / "build.log").exists() else "")
    return request.config.stash[_BUILD].wait()


@pytest.fixture(scope="session")
def built_book(book_build) -> Path:
    """The HTML folder of the strict build; fails with the build's log when the build failed."""
    if book_build.returncode != 0:
        pytest.fail(f"the strict book build failed (exit {book_build.returncode}):\n{book_build.log[-6000:]}")
    return book_build.html


@pytest.fixture(scope="session")
def keyed_engine(tmp_path_factory):
    """One CPU vLLM engine with an API key, shared by the serving tests and the workshop's staged
    failures (each engine costs 20-60 s of two cores to start). While it starts, its port is tried
    once the process is up (``refused_while_starting``: a readiness probe's view of a loading
    engine); ``progress_seen`` keeps what it reported while starting."""
    import threading

    from llmserve.serving.client import health
    from llmserve.serving.engine import LocalVLLM, free_port, port_is_free
    from llmserve.serving.tinymodel import TINY

    progress = []
    srv = LocalVLLM(TINY, max_model_len=KEYED_ENGINE_MAX_MODEL_LEN, kv_cache_memory_bytes=KEYED_ENGINE_KV_BYTES,
                    api_key=KEYED_ENGINE_KEY, port=free_port(), startup_timeout_s=400,
                    log_path=tmp_path_factory.mktemp("keyed-engine") / "vllm.log",
                    progress=lambda s, msg: progress.append((s, msg)))
    srv.progress_seen, srv.refused_while_starting = progress, None
    done = threading.Event()

    def watch():
        while not done.is_set():
            if srv.is_running() and "non-default args" in srv.log_text():
                srv.refused_while_starting = refuses_connections(srv.port)
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        srv.start()
    finally:
        done.set()
        watcher.join(5)
    with srv:
        yield srv
    # Stopped cleanly: nothing answers any more and the port is free again.
    assert not srv.is_running()
    assert not srv.group_alive()          # the engine core (and its worker) are gone too
    assert not health(srv.base_url, timeout_s=1)
    assert port_is_free(srv.port)


@pytest.fixture(scope="session")
def router_bin():
    """The vllm-router binary. CI installs it (scripts/setup.sh): there a missing one fails."""
    from llmserve.routing.fleet import router_binary

    path = router_binary()
    if not path.exists():
        missing_tool(f"no vllm-router at {path} (scripts/setup.sh installs it into .venv-router)")
    return path


@pytest.fixture(scope="session")
def fleet(router_bin):
    """Two CPU vLLM engines behind vllm-router, started once per session (engines cost 30-90 s
    to start on two busy cores; the routing and observability tests send a few seconds of work)."""
    from llmserve.routing.fleet import EngineSettings, Fleet

    # The routing lab's cache: too small for every tenant's prompt on one engine (tests/routing/test_experiment.py).
    with Fleet(2, policy="round_robin", settings=EngineSettings(kv_cache_blocks=12)) as f:
        yield f


def pytest_collection_modifyitems(config, items):
    # While the book builds in the background: first every test that does not need the book,
    # then the book's tests (they wait for the build). What times an engine runs in the build.
    items.sort(key=lambda item: 1 if _needs_the_book(item) else 0)
    from llmserve.world import mode

    device, device_reason = mode.detect_device()
    has_vllm = mode.vllm_python().exists()
    for item in items:
        if "gpu" in item.keywords and device != "cuda":
            item.add_marker(pytest.mark.skip(reason=f"needs a CUDA GPU ({device_reason}); not counted as passing in CI"))
        if "cluster" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs a live Kubernetes cluster; the suite always runs offline"))
        if "vllm" in item.keywords and not has_vllm and not os.environ.get("CI"):
            # CI installs .venv-vllm (scripts/setup.sh): there a missing engine fails the test instead.
            item.add_marker(pytest.mark.skip(reason=f"no CPU vLLM at {mode.vllm_python()}: run scripts/setup.sh"))
