"""Pure rules: the API gateway's nginx.conf, what it passes to vLLM, and its local rewrite.

Used by the API-key chapter (book/api-key.md, notebooks/api-key-lab.ipynb) and the
gateway runner (``llmserve.security.gateway``). The configuration lives in one place,
the ConfigMap of ``manifests/components/api-gateway``; everything here reads it from
there.

* :func:`parse` reads nginx's configuration syntax (directives, blocks, quotes, comments)
  into a tree; :func:`decide` follows nginx's location matching for one request (exact
  ``location = …`` first, then the longest prefix) and says what the gateway does with it;
* :func:`check` holds that decision against vLLM's route table
  (``llmserve.security.routes``): every client route passes with its method, no other
  route of vLLM passes at all, and the upstream is the vLLM Service;
* :func:`local_config` is the same text for a local nginx in front of the local engine:
  only the upstream server, the listen line and the ``/tmp/`` paths change.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from llmserve.core import manifest_files
from llmserve.core.errors import InputError, ManifestError
from llmserve.core.findings import ERROR, OK, Finding, Report
from llmserve.core.names import system
from llmserve.security import routes

#: The gateway's kustomize component, under manifests/, its ConfigMap and its Service (where
#: clients, and the lab's port-forward, go instead of vLLM's Service).
COMPONENT = "components/api-gateway"
CONFIGMAP = f"{COMPONENT}/nginx-configmap.yaml"
CONF_KEY = "nginx.conf"
SERVICE_FILE = f"{COMPONENT}/gateway-service.yaml"

#: What clients of the course need (the service and stack chapters use nothing else).
CLIENT_ROUTES = (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"))


# -- reading the configuration ----------------------------------------------------------
def gateway_conf() -> str:
    """The nginx.conf text of the gateway's ConfigMap, as the Pod mounts it."""
    cm = manifest_files.load_one(CONFIGMAP)
    text = (cm.get("data") or {}).get(CONF_KEY)
    if not text:
        raise ManifestError(f"manifests/{CONFIGMAP} has no data.{CONF_KEY}.",
                            f"Keep the gateway's configuration under data.{CONF_KEY} of that ConfigMap.")
    return text


def gateway_service() -> tuple[str, int]:
    """The gateway Service's name and port, as its manifest says."""
    svc = manifest_files.load_one(SERVICE_FILE)
    return svc["metadata"]["name"], int(svc["spec"]["ports"][0]["port"])


@dataclass(frozen=True)
class Directive:
    """``name args;`` or, with ``block`` not None, ``name args { … }``."""

    name: str
    args: tuple[str, ...]
    block: tuple["Directive", ...] | None = None

    def all(self, name: str) -> list["Directive"]:
        return [d for d in self.block or () if d.name == name]

    def first(self, name: str) -> "Directive | None":
        found = self.all(name)
        return found[0] if found else None


_TOKEN = re.compile(r"""\s+|#[^\n]*|'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|([{};])|([^\s{};'"#]+)""")


def _tokens(text: str) -> list[tuple[str, str]]:
    """``("word", text)`` (quotes removed) and ``("mark", "{" | "}" | ";")``; comments dropped."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise InputError(f"nginx.conf: cannot read from {text[pos:pos + 30]!r}.",
                             "Check the quotes around that place: every ' or \" must be closed.")
        pos = m.end()
        single, double, mark, word = m.groups()
        if single is not None or double is not None:
            out.append(("word", single if single is not None else double))
        elif mark is not None:
            out.append(("mark", mark))
        elif word is not None:
            out.append(("word", word))
    return out


def parse(text: str) -> Directive:
    """nginx's configuration syntax as a tree; the root is a block named ``main``."""
    tokens = _tokens(text)
    stack: list[tuple[str, tuple[str, ...], list[Directive]]] = [("main", (), [])]
    words: list[str] = []
    for kind, value in tokens:
        if kind == "word":
            words.append(value)
        elif value == ";":
            if not words:
                raise InputError("nginx.conf: a ';' without a directive.", "Remove the stray ';'.")
            stack[-1][2].append(Directive(words[0], tuple(words[1:])))
            words = []
        elif value == "{":
            if not words:
                raise InputError("nginx.conf: a '{' without a directive.", "Name the block, e.g. `server {`.")
            stack.append((words[0], tuple(words[1:]), []))
            words = []
        else:   # "}"
            if words or len(stack) == 1:
                raise InputError("nginx.conf: an unexpected '}'.",
                                 "End the directive before it with ';' and check that the braces pair up.")
            name, args, children = stack.pop()
            stack[-1][2].append(Directive(name, args, tuple(children)))
    if words or len(stack) != 1:
        raise InputError("nginx.conf ends inside a directive or a block.", "Close every block with '}'.")
    return Directive("main", (), tuple(stack[0][2]))


def _server(tree: Directive) -> Directive:
    http = tree.first("http")
    servers = http.all("server") if http else []
    if len(servers) != 1:
        raise InputError(f"The gateway's nginx.conf has {len(servers)} server blocks; the checker reads one.",
                         "Keep one `server { … }` in the http block.")
    return servers[0]


def upstream_servers(tree: Directive) -> dict[str, list[str]]:
    """Each ``upstream NAME { server HOST:PORT; }`` block: name → its servers."""
    http = tree.first("http")
    return {u.args[0]: [s.args[0] for s in u.all("server")] for u in (http.all("upstream") if http else [])}


def listen_ports(tree: Directive) -> list[str]:
    return [d.args[0] for d in _server(tree).all("listen")]


# -- what nginx does with one request ----------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """What the gateway does with one request: ``status`` it answers itself, or ``upstream_path``."""

    method: str
    raw_path: str
    path: str                  # nginx's normalised path, what the locations match
    location: str              # "= /v1/models", "/" …
    status: int | None = None  # answered by the gateway (403, 404, 400 …)
    upstream_path: str | None = None

    @property
    def passed(self) -> bool:
        return self.upstream_path is not None

    def __str__(self) -> str:
        then = f"passed to vLLM as {self.upstream_path}" if self.passed else f"answered {self.status} by the gateway"
        return f"{self.method} {self.raw_path} → location {self.location}: {then}"


def normalise(raw_path: str) -> str | None:
    """The path nginx matches locations against: query cut, %XX decoded, ``//`` merged, dot
    segments resolved (nginx's ``ngx_http_parse_complex_uri``). None where nginx answers 400
    (a ``..`` above the root)."""
    path = _percent_decode(raw_path.split("?", 1)[0])
    if not path.startswith("/"):
        return None
    depth = 0
    for part in path.split("/")[1:]:
        depth += -1 if part == ".." else 0 if part in ("", ".") else 1
        if depth < 0:
            return None
    merged = re.sub(r"/{2,}", "/", path)
    normal = posixpath.normpath(merged)
    return normal + "/" if merged.endswith("/") and normal != "/" else normal


def _percent_decode(text: str) -> str:
    """``%XX`` → the byte it names (what nginx does before matching; ``urllib`` is not a pure module)."""
    raw = re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), text.encode("utf-8"))
    return raw.decode("utf-8", "replace")


def _locations(server: Directive) -> list[Directive]:
    found = server.all("location")
    for loc in found:
        if loc.args[0] not in ("=", "^~") and len(loc.args) != 1:
            raise InputError(f"nginx.conf: `location {' '.join(loc.args)}` is a regex location.",
                             "The checker reads exact (`=`) and prefix locations only; write the paths out.")
    return found


def decide(tree: Directive, method: str, raw_path: str) -> Decision:
    """What nginx does with ``method raw_path`` under this configuration."""
    path = normalise(raw_path)
    if path is None:
        return Decision(method, raw_path, raw_path, "(none)", status=400)
    locations = _locations(_server(tree))
    exact = [loc for loc in locations if loc.args[0] == "=" and loc.args[1] == path]
    prefixes = [loc for loc in locations if loc.args[0] != "=" and path.startswith(loc.args[-1])]
    if exact:
        loc = exact[0]
    elif prefixes:
        loc = max(prefixes, key=lambda d: len(d.args[-1]))
    else:
        return Decision(method, raw_path, path, "(none)", status=404)
    where = " ".join(loc.args)
    # nginx's phases: `return` (rewrite phase) runs before `limit_except` (access phase).
    answer = loc.first("return")
    if answer is not None:
        return Decision(method, raw_path, path, where, status=int(answer.args[0]))
    limit = loc.first("limit_except")
    if limit is not None and _denied(limit, method):
        return Decision(method, raw_path, path, where, status=403)
    proxy = loc.first("proxy_pass")
    if proxy is None:
        return Decision(method, raw_path, path, where, status=404)
    return Decision(method, raw_path, path, where, upstream_path=_upstream_path(proxy.args[0], loc, path))


def _denied(limit: Directive, method: str) -> bool:
    """``limit_except GET { deny all; }``: methods other than those named are refused (GET implies HEAD)."""
    allowed = {m.upper() for m in limit.args}
    if "GET" in allowed:
        allowed.add("HEAD")
    denies_all = any(d.name == "deny" and d.args == ("all",) for d in limit.block or ())
    return denies_all and method.upper() not in allowed


def _upstream_path(target: str, loc: Directive, path: str) -> str:
    """The path vLLM receives: with a URI in proxy_pass, it replaces the matched part; without
    one, nginx passes the client's original request line unchanged."""
    m = re.match(r"^https?://[^/]+(/.*)?$", target)
    uri = m.group(1) if m else None
    if uri is None:
        return "(the client's path, unchanged)"
    return uri if loc.args[0] == "=" else uri + path[len(loc.args[-1]):]


# -- the check ---------------------------------------------------------------------------
def check(conf_text: str | None = None) -> Report:
    """The gateway's configuration against vLLM's route table and the Service it fronts."""
    tree = parse(conf_text if conf_text is not None else gateway_conf())
    found: list[Finding] = []
    for method, path in CLIENT_ROUTES:
        d = decide(tree, method, path)
        ok = d.passed and d.upstream_path == path
        found.append(Finding(OK if ok else ERROR, str(d),
                             "" if ok else f"Add `location = {path}` with `proxy_pass http://vllm{path};`.",
                             check=f"passes {method} {path}"))
    clients = set(CLIENT_ROUTES)
    leaks = [(m, r.path, decide(tree, m, r.path)) for r in routes.ROUTES for m in r.methods
             if (m, r.path) not in clients]
    passed = [(m, p, d) for m, p, d in leaks if d.passed]
    for m, p, d in passed:
        why = "with no key asked" if not routes.is_guarded(p) else "(vLLM asks the key there, clients do not need it)"
        found.append(Finding(ERROR, f"{d} {why}", "Let only the client paths reach vLLM; answer 404 to the rest.",
                             check=f"blocks {m} {p}"))
    if not passed:
        statuses = sorted({d.status for _, _, d in leaks})
        found.append(Finding(OK, f"none of the other {len(leaks)} method-and-path pairs of vLLM's table reaches "
                                 f"vLLM (the gateway answers {', '.join(map(str, statuses))})",
                             check="blocks the rest"))
    found.append(_upstream_finding(tree))
    return Report("API gateway (nginx.conf)", tuple(found), ok_text="passes the client paths only")


def _upstream_finding(tree: Directive) -> Finding:
    n = system()
    want = f"{n.dns_name}:{n.service_port}"
    servers = [s for group in upstream_servers(tree).values() for s in group]
    if servers == [want]:
        return Finding(OK, f"upstream {want}: the vLLM Service", check="upstream")
    return Finding(ERROR, f"upstream servers {servers}, not the vLLM Service {want}",
                   f"Write `server {want};` in the upstream block.", check="upstream")


# -- the same configuration on this machine ----------------------------------------------
def local_config(conf_text: str, *, upstream: str, listen: str, runtime_dir: str) -> str:
    """``conf_text`` for a local nginx: upstream server → ``upstream`` (``127.0.0.1:PORT``),
    ``listen`` → ``listen`` (``127.0.0.1:PORT``), ``/tmp/`` → ``runtime_dir``. Each rewrite must
    apply exactly where the configuration has one such line, so the rest stays byte for byte."""
    tree = parse(conf_text)
    servers = [s for group in upstream_servers(tree).values() for s in group]
    ports = listen_ports(tree)
    if len(servers) != 1 or len(ports) != 1:
        raise InputError(f"The gateway's nginx.conf has {len(servers)} upstream servers and {len(ports)} listen "
                         "lines; the local run rewrites exactly one of each.",
                         "Keep one `server HOST:PORT;` in the upstream block and one `listen PORT;`.")
    text = _replace_once(conf_text, rf"(\n\s*server\s+){re.escape(servers[0])}(\s*;)", upstream)
    text = _replace_once(text, rf"(\n\s*listen\s+){re.escape(ports[0])}(\s*;)", listen)
    return re.sub(r"(?<=[\s'\"])/tmp/", runtime_dir.rstrip("/") + "/", text)


def _replace_once(text: str, pattern: str, value: str) -> str:
    new, count = re.subn(pattern, lambda m: m.group(1) + value + m.group(2), text)
    if count != 1:
        raise InputError(f"nginx.conf: {count} places match {pattern!r}, expected one.",
                         "Write each rewritten directive on its own line, once.")
    return new
