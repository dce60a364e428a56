"""The last-resort stop at exit: a server's whole process group goes at once, whatever it does with SIGTERM."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from llmserve.world.processes import kill_groups_now
from tests.support import REPO

#: A stand-in for a draining vLLM: it ignores SIGTERM (vLLM waits up to --shutdown-timeout) and
#: has a child of its own (vLLM's engine core), printed so the test can look for both.
DRAINING = ("import os, signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            "print(child.pid, flush=True); time.sleep(120)")


def _gone(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_the_group_is_killed_without_waiting_for_a_drain():
    proc = subprocess.Popen([sys.executable, "-c", DRAINING], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    child = int(proc.stdout.readline())
    started = time.monotonic()
    kill_groups_now([proc, None])
    proc.wait(timeout=5)
    assert time.monotonic() - started < 2
    deadline = time.monotonic() + 5
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child), "the server's child outlived the kill"
    kill_groups_now([proc])          # already gone: nothing to do, no error


ENGINE_LEFT_RUNNING = textwrap.dedent(f"""
    import subprocess, sys, time
    from llmserve.serving import engine
    server = engine.LocalVLLM(engine.TINY, python=sys.executable)
    # What start() leaves behind, without a 20 s engine start: a running group in the registry.
    server.proc = subprocess.Popen([sys.executable, "-c", {DRAINING!r}], stdout=subprocess.PIPE, text=True,
                                   start_new_session=True)
    engine._LIVE.add(server)
    print(server.proc.pid, server.proc.stdout.readline().strip(), time.time(), flush=True)
    # The kernel exits here without server.stop(): the atexit hook must end the group at once.
""")


def test_an_engine_left_running_is_killed_when_python_exits():
    out = subprocess.run([sys.executable, "-c", ENGINE_LEFT_RUNNING], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    exited_at = time.time()
    assert out.returncode == 0, out.stderr[-2000:]
    server, child, left_at = out.stdout.split()[-3:]
    # From the script's last line to the process gone: well inside the 5 s jupyter_client gives a
    # kernel between the shutdown request and SIGKILL (a graceful stop would wait for the drain).
    assert exited_at - float(left_at) < 3
    deadline = time.monotonic() + 5
    while not (_gone(int(server)) and _gone(int(child))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(int(server)) and _gone(int(child))
