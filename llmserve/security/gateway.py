"""Live: the API gateway's nginx.conf under this machine's ``nginx``, on loopback, in front of a local engine.

Used by the API-key lab (notebooks/api-key-lab.ipynb) and its tests. The configuration
is the ConfigMap's text (``llmserve.security.policy.gateway_conf``) with the three local
rewrites of ``policy.local_config``; the binary is Debian's ``nginx`` package
(``apt-get install nginx``; scripts/setup.sh installs it). Typical use::

    with LocalVLLM(api_key=key) as engine, LocalGateway(engine.port) as gw:
        http.get(gw.url, "/v1/models", api_key=key)

nginx runs in the foreground (``daemon off``) in its own process group, with its pid
file, temporary files and configuration in a fresh folder; stopping it sends SIGQUIT
(nginx's graceful shutdown), then SIGKILL.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from llmserve.core import http
from llmserve.core.errors import ServerError
from llmserve.core.waiting import wait_until
from llmserve.security import policy
from llmserve.serving.engine import free_port

NGINX_FIX = ("Install Debian's nginx: `sudo apt-get install -y nginx` (scripts/setup.sh does it), "
             "or set COURSE_NGINX to an nginx binary.")


def nginx_binary() -> str:
    """The nginx to run: ``$COURSE_NGINX``, else ``nginx`` on PATH or in /usr/sbin."""
    found = os.environ.get("COURSE_NGINX") or shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not found or not Path(found).exists():
        raise ServerError("No nginx binary on this machine, so the gateway cannot run locally.", NGINX_FIX)
    return found


def nginx_version() -> str:
    """``nginx/1.22.1``: what ``nginx -v`` prints (on stderr)."""
    proc = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, timeout=10)
    return (proc.stderr or proc.stdout).strip().removeprefix("nginx version: ")


def check_config(conf_text: str) -> subprocess.CompletedProcess:
    """``nginx -t`` on a configuration (written to a temporary folder); returncode 0 = valid."""
    with tempfile.TemporaryDirectory(prefix="gateway-test-") as tmp:
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(conf_text)
        return subprocess.run([nginx_binary(), "-t", "-q", "-e", "stderr", "-p", tmp, "-c", str(conf)],
                              capture_output=True, text=True, timeout=30)


class LocalGateway:
    """The gateway's nginx on ``127.0.0.1:<port>``, proxying to ``127.0.0.1:<upstream_port>``."""

    def __init__(self, upstream_port: int, *, port: int | None = None, conf_text: str | None = None,
                 startup_timeout_s: float = 20) -> None:
        self.upstream_port = upstream_port
        self.port = port
        self.source_conf = conf_text if conf_text is not None else policy.gateway_conf()
        self.startup_timeout_s = startup_timeout_s
        self.dir: Path | None = None
        self.conf: str = ""
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return self.dir / "nginx.log" if self.dir else None

    def log_tail(self, lines: int = 15) -> str:
        p = self.log_path
        return "\n".join(p.read_text(errors="replace").splitlines()[-lines:]) if p and p.exists() else ""

    def start(self) -> "LocalGateway":
        binary = nginx_binary()
        self.port = self.port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="api-gateway-"))
        # Run as root, nginx's workers drop to an unprivileged user: they must reach the temp folders.
        self.dir.chmod(0o755)
        self.conf = policy.local_config(self.source_conf, upstream=f"127.0.0.1:{self.upstream_port}",
                                        listen=f"127.0.0.1:{self.port}", runtime_dir=str(self.dir))
        conf_path = self.dir / "nginx.conf"
        conf_path.write_text(self.conf)
        checked = check_config(self.conf)
        if checked.returncode != 0:
            raise ServerError(f"nginx refuses the gateway's configuration:\n{checked.stderr.strip()}",
                              f"Fix manifests/{policy.CONFIGMAP}; `nginx -t -c FILE` shows the same message.")
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary, "-e", "stderr", "-p", str(self.dir), "-c", str(conf_path),
                                      "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()   # the child holds its own copy
        try:
            wait_until(self._look, timeout_s=self.startup_timeout_s, interval_s=0.2,
                       on_timeout=lambda status, s: ServerError(
                           f"The local gateway did not answer /healthz within {s:.0f} s ({status}).\n"
                           f"{self.log_tail()}", "Read nginx's messages above; is the port free?"))
        except BaseException:
            self.stop()
            raise
        return self

    def _look(self) -> tuple[bool, str]:
        if self.proc.poll() is not None:
            raise ServerError(f"nginx exited at start-up (code {self.proc.returncode}):\n{self.log_tail()}",
                              "Read nginx's message above: a port in use, or a directive this nginx lacks.")
        try:
            http.get(self.url, "/healthz", timeout=1)
            return True, "answering"
        except ServerError as err:
            return False, err.what

    def stop(self, timeout_s: float = 10) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGQUIT)
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> "LocalGateway":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.proc is not None and self.proc.poll() is None else "stopped"
        return f"LocalGateway({self.url} → 127.0.0.1:{self.upstream_port}, {state})"
