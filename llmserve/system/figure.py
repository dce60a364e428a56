"""The figure of the opening chapter (``book/system.md``): the whole system, two paths.

Presentation (the opening chapter, ``book/system.md``; the figure ``book/figures/system.svg``).
It draws the course's objects with their real names, read from the manifests in
``manifests/base/``, and two coloured paths through them:

* the **request path** (blue, steps 1-6, and ``P`` for ``kubectl port-forward``):
  client → DNS name → Service ClusterIP → EndpointSlice → Pod IP:8000 →
  vLLM's OpenAI-compatible server → scheduler → GPU with the KV cache;
* the **weights path** (orange, steps A-E): the node's ``/models/<model>``
  directory → hostPath PersistentVolume → PersistentVolumeClaim → read-only
  volumeMount → vLLM loads the safetensors → GPU memory.

The SVG is written by hand-rolled code (no plotting library): exact layout,
generic ``sans-serif``/``monospace`` fonts so it renders offline, a ``<title>``
and ``<desc>`` for screen readers, and byte-for-byte deterministic output, so a
test can check that the committed file is what this code draws from the
manifests of today. Regenerate it after changing a manifest::

    .venv/bin/python -m llmserve.system.figure

The names come from :mod:`llmserve.core.names` (tested on its own); this
module only draws (:func:`build_svg`) and writes the file (:func:`render`).
"""
from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from llmserve.core import vllm
from llmserve.core.names import SystemNames, system
from llmserve.core.paths import BOOK_DIR

#: Where the book includes the figure from (``book/system.md``).
FIGURE_PATH = BOOK_DIR / "figures" / "system.svg"

# Colours: blue and orange stay distinguishable with the common colour-vision deficiencies.
REQUEST = "#1f6fb2"
WEIGHTS = "#c25e00"
OWNER = "#6b7280"
INK = "#1f2328"
MUTED = "#57606a"


# Average advance widths, as a fraction of the font size, measured on DejaVu Sans
# (the widest common sans-serif; Linux browsers pick it) and rounded up.
_WIDTH = {"sans": 0.58, "bold": 0.65, "mono": 0.61}
_FAMILY = {"sans": "sans-serif", "bold": "sans-serif", "mono": "monospace"}


def text_width(text: str, size: float, style: str = "sans") -> float:
    """A safe upper estimate of how wide ``text`` renders (px)."""
    return len(text) * size * _WIDTH[style]


def _n(v: float) -> str:
    """A coordinate without float noise (deterministic output)."""
    r = round(v, 1)
    return str(int(r)) if r == int(r) else str(r)


class _Svg:
    def __init__(self, width: int, height: int):
        self.w, self.h = width, height
        self.parts: list[str] = []

    def add(self, s: str) -> None:
        self.parts.append(s)

    def rect(self, x, y, w, h, fill="#ffffff", stroke="#8c959f", rx=8, dash=None, sw=1.5):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="{rx}" '
                 f'fill="{fill}" stroke="{stroke}" stroke-width="{sw}"{d}/>')

    def text(self, x, y, s, size=14, style="sans", fill=INK, anchor="start", halo=False, max_width=None):
        if max_width is not None and text_width(s, size, style) > max_width:
            raise ValueError(f"Text {s!r} ({text_width(s, size, style):.0f}px at {size}px) "
                             f"does not fit in {max_width:.0f}px: shorten it or widen its box.")
        weight = ' font-weight="bold"' if style == "bold" else ""
        fam = "" if _FAMILY[style] == "sans-serif" else f' font-family="{_FAMILY[style]}"'
        h = ' stroke="#ffffff" stroke-width="4" stroke-linejoin="round" paint-order="stroke"' if halo else ""
        a = "" if anchor == "start" else f' text-anchor="{anchor}"'
        # data-room: the width this label must fit in (checked in a browser by the tests).
        room = "" if max_width is None else f' data-room="{_n(max_width)}"'
        self.add(f'<text x="{_n(x)}" y="{_n(y)}" font-size="{size}"{fam}{weight}{a} fill="{fill}"{h}{room}>'
                 f'{escape(s)}</text>')

    def box(self, x, y, w, h, title, lines=(), fill="#ffffff", stroke="#8c959f", badge=None, dash=None):
        """A labelled box: a bold title, then lines given as (text, style) pairs."""
        self.rect(x, y, w, h, fill=fill, stroke=stroke, dash=dash)
        pad = 12
        room = w - 2 * pad - (28 if badge else 0)
        self.text(x + pad, y + 22, title, 15, "bold", max_width=room)
        ty = y + 22
        for s, style in lines:
            ty += 19
            self.text(x + pad, ty, s, 13.5 if style == "sans" else 13, style,
                      fill=INK if style == "mono" else MUTED, max_width=w - 2 * pad)
        if ty + 8 > y + h:
            raise ValueError(f"Box {title!r} is too short for its {len(lines)} lines.")
        if badge:
            self.badge(x + w - 20, y + 19, *badge)

    def badge(self, cx, cy, label, color):
        self.add(f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="12" fill="{color}"/>')
        self.add(f'<text x="{_n(cx)}" y="{_n(cy + 5)}" font-size="14" font-weight="bold" '
                 f'text-anchor="middle" fill="#ffffff">{escape(label)}</text>')

    def arrow(self, points, color, width=3, dash=None, marker=None):
        d = "M " + " L ".join(f"{_n(x)} {_n(y)}" for x, y in points)
        ds = f' stroke-dasharray="{dash}"' if dash else ""
        mk = marker or {REQUEST: "req", WEIGHTS: "wts", OWNER: "own"}[color]
        self.add(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="{width}"{ds} '
                 f'stroke-linejoin="round" marker-end="url(#arrow-{mk})"/>')

    def render(self, title: str, desc: str) -> str:
        markers = "".join(
            f'<marker id="arrow-{mid}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="{size}" '
            f'markerHeight="{size}" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
            f'<path d="M 0 0 L 10 5 L 0 10 z" fill="{c}"/></marker>'
            for mid, c, size in (("req", REQUEST, 13), ("wts", WEIGHTS, 13), ("own", OWNER, 10)))
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.w} {self.h}" '
                f'width="{self.w}" height="{self.h}" role="img" aria-labelledby="system-title system-desc" '
                f'font-family="sans-serif">\n'
                f'<title id="system-title">{escape(title)}</title>\n'
                f'<desc id="system-desc">{escape(desc)}</desc>\n'
                f'<defs>{markers}</defs>\n'
                f'<rect x="0" y="0" width="{self.w}" height="{self.h}" fill="#ffffff"/>\n')
        return head + "\n".join(self.parts) + "\n</svg>\n"


def _modes(modes: tuple[str, ...]) -> str:
    return ", ".join(modes)


def build_svg(n: SystemNames) -> str:
    """Draw the system with the names in ``n``; returns the SVG text (deterministic)."""
    # One function on purpose: it reads top to bottom in drawing order, each block one part of
    # the figure at fixed coordinates; split up, the coordinates that must line up would scatter.
    s = _Svg(1000, 1196)
    pct_unused = round(100 * (1 - n.gpu_memory_utilization))

    # ---- legend (top left) ------------------------------------------------
    lx, ly = 24, 40
    s.text(lx, ly, "Legend", 16, "bold")
    rows = [(REQUEST, None, "request path, steps 1–6 (a client inside the cluster)"),
            (REQUEST, "9 6", "request path from your laptop: kubectl port-forward (P)"),
            (WEIGHTS, None, "weights path, steps A–E (disk to GPU memory)"),
            (OWNER, None, "owner: a controller creates the next object")]
    for i, (color, dash, label) in enumerate(rows):
        y = ly + 28 + 25 * i
        s.arrow([(lx, y - 5), (lx + 46, y - 5)], color, width=2 if color == OWNER else 3, dash=dash)
        s.text(lx + 58, y, label, 13.5, max_width=560 - lx - 58)

    # ---- your laptop (outside the cluster, top right) ---------------------
    s.box(592, 20, 392, 128, "Your laptop (outside the cluster)", [
        (f"curl / OpenAI SDK → http://localhost:{n.service_port}/v1", "sans"),
        (f"kubectl port-forward -n {n.namespace}", "mono"),
        (f"\u00a0\u00a0svc/{n.service} {n.service_port}:{n.service_port}", "mono"),
        ("tunnel: API server → kubelet → one Pod", "sans"),
    ], fill="#f4f8fc", stroke=REQUEST, badge=("P", REQUEST))

    # ---- the cluster ------------------------------------------------------
    s.rect(12, 170, 976, 862, fill="#f6f8fa", stroke="#8c959f", rx=12, sw=2)
    s.text(28, 196, "Kubernetes cluster: one node (k3s, kind or minikube)", 16, "bold")

    host, tail = n.dns_name.split(".", 1)
    s.box(36, 212, 400, 96, "A Pod anywhere in the cluster", [
        (f"http://{host}", "mono"),
        (f"\u00a0\u00a0.{tail}:{n.service_port}", "mono"),
    ], badge=("1", REQUEST))

    # namespace
    s.rect(28, 336, 944, 562, fill="#ffffff", stroke="#57606a", rx=10, dash="7 5", sw=1.5)
    s.text(48, 362, f"Namespace {n.namespace}", 15, "bold")

    # left column: Service, EndpointSlice, Deployment, ReplicaSet, PVC
    cx, cw = 48, 300
    s.box(cx, 376, cw, 84, f"Service ({n.service_type})", [
        (n.service, "mono"),
        (f"port {n.service_port} → targetPort {n.target_port}", "sans"),
    ], fill="#f4f8fc", stroke=REQUEST, badge=("2", REQUEST))
    s.box(cx, 496, cw, 84, "EndpointSlice", [
        (f"{n.service}-xxxxx", "mono"),
        (f"Pod IPs : {n.container_port}, each ready or not", "sans"),
    ], fill="#f4f8fc", stroke=REQUEST, badge=("3", REQUEST))
    s.box(cx, 606, cw, 80, "Deployment", [
        (n.deployment, "mono"),
        (f"replicas {n.replicas} · strategy {n.strategy}", "sans"),
    ], fill="#f6f8fa")
    s.box(cx, 708, cw, 64, "ReplicaSet", [
        (f"{n.deployment}-<hash>", "mono"),
    ], fill="#f6f8fa")
    s.box(cx, 796, cw, 84, "PersistentVolumeClaim", [
        (n.pvc, "mono"),
        (f"{_modes(n.pvc_access_modes)} · {n.pvc_request}", "sans"),
    ], fill="#fdf3e9", stroke=WEIGHTS, badge=("C", WEIGHTS))

    # the Pod
    px, pw = 376, 576
    s.rect(px, 376, pw, 508, fill="#ffffff", stroke="#24292f", rx=10, sw=2)
    s.text(px + 14, 400, f"Pod {n.deployment}-<hash>-<id>", 15, "bold", max_width=pw - 28)
    s.text(px + 14, 421, f"container {n.container} · image {n.image}", 13.5, fill=MUTED, max_width=pw - 28)
    bx, bw = px + 24, pw - 48
    api_lines = [("/v1/chat/completions\u00a0\u00a0/v1/completions\u00a0\u00a0/health\u00a0\u00a0/metrics", "mono")]
    if n.api_key_secret:
        api_lines.append((f"/v1/… asks for Bearer <key from Secret {n.api_key_secret}>", "sans"))
    s.box(bx, 440, bw, 90, f"OpenAI-compatible API server · Pod IP : {n.container_port}", api_lines,
          fill="#f4f8fc", stroke=REQUEST, badge=("4", REQUEST))
    s.box(bx, 558, bw, 60, "EngineCore: scheduler and KV cache manager", [
        (f"continuous batching; KV cache in blocks ({vllm.GPU_DEFAULT_BLOCK_SIZE} tokens by default)", "sans"),
    ], fill="#f4f8fc", stroke=REQUEST, badge=("5", REQUEST))

    # GPU with a schematic memory bar
    gy = 646
    s.box(bx, gy, bw, 128, f"GPU memory (nvidia.com/gpu: {n.gpus})", [], fill="#eef7f0", stroke="#2f7d4a",
          badge=("6", REQUEST))
    mx, mw, my, mh = bx + 14, bw - 28, gy + 34, 36
    budget = mw * n.gpu_memory_utilization
    w_weights, w_act = 150, 62
    kv0, kv1 = mx + w_weights + w_act, mx + budget
    s.rect(mx, my, w_weights, mh, fill="#f5c99b", stroke=WEIGHTS, rx=3, sw=1.5)
    s.text(mx + 36, my + 23, "weights", 13.5, "bold", fill="#7a3b00")
    s.rect(mx + w_weights, my, w_act, mh, fill="#e5e7eb", stroke="#8c959f", rx=3, sw=1)
    s.text(mx + w_weights + w_act / 2, my + 23, "activ.", 12.5, fill=INK, anchor="middle")
    s.rect(kv0, my, kv1 - kv0, mh, fill="#d6e6f5", stroke=REQUEST, rx=3, sw=1.5)
    cell, cols = 14, int((kv1 - kv0 - 8) // 16)
    for i in range(cols):
        for j in range(2):
            filled = (i * 7 + j * 3) % 5 < 3  # blocks in use by running requests (schematic)
            s.add(f'<rect x="{_n(kv0 + 5 + i * 16)}" y="{_n(my + 4 + j * 16)}" width="{cell}" height="{cell}" '
                  f'rx="2" fill="{REQUEST if filled else "#ffffff"}" fill-opacity="{0.75 if filled else 1}" '
                  f'stroke="{REQUEST}" stroke-width="0.8"/>')
    s.rect(kv1, my, mx + mw - kv1, mh, fill="#ffffff", stroke="#8c959f", rx=3, sw=1, dash="4 3")
    s.text((kv1 + mx + mw) / 2, my + 23, f"{pct_unused}%", 12.5, fill=MUTED, anchor="middle")
    s.badge(mx + 18, my + mh / 2, "E", WEIGHTS)
    s.text(kv0, my + mh + 18, "KV cache: paged blocks", 13, "bold", fill=REQUEST)
    s.text(mx + mw, my + mh + 38, f"vLLM's budget: {n.gpu_memory_utilization:.2f} × total (not to scale)",
           12.5, fill=MUTED, anchor="end", max_width=mx + mw - (mx + 90))

    # mounts
    my2 = 812
    s.box(bx, my2, 252, 60, f"volume → {n.models_mount_path}", [
        (f"readOnly: {'true' if n.models_read_only else 'false'}", "mono"),
    ], fill="#fdf3e9", stroke=WEIGHTS, badge=("D", WEIGHTS))
    s.box(bx + 276, my2, bw - 276, 60, "/dev/shm", [
        (f"emptyDir in RAM · {n.shm_size}", "sans"),
    ], fill="#f6f8fa")

    # PV (cluster-scoped) and the node's disk
    s.box(36, 930, 400, 84, "PersistentVolume (cluster-scoped)", [
        (n.pv, "mono"),
        (f"hostPath {n.pv_host_path} · {n.pv_capacity} · {n.pv_reclaim}", "sans"),
    ], fill="#fdf3e9", stroke=WEIGHTS, badge=("B", WEIGHTS))
    s.box(36, 1068, 470, 112, "The node's filesystem (not Kubernetes)", [
        (f"{n.host_model_dir}/", "mono"),
        ("\u00a0\u00a0config.json\u00a0\u00a0tokenizer.json\u00a0\u00a0...", "mono"),
        ("\u00a0\u00a0model-*.safetensors", "mono"),
    ], fill="#fdf3e9", stroke=WEIGHTS, badge=("A", WEIGHTS))

    # ---- request path (blue) ---------------------------------------------
    s.arrow([(300, 308), (300, 374)], REQUEST)                      # 1 → 2 : DNS name → ClusterIP
    s.text(312, 330, "DNS name → ClusterIP", 13, fill=REQUEST, halo=True)
    s.arrow([(198, 460), (198, 494)], REQUEST)                      # 2 → 3
    s.text(210, 482, "kube-proxy rules", 13, fill=REQUEST, halo=True)
    s.arrow([(348, 530), (362, 530), (362, 490), (bx - 2, 490)], REQUEST)  # 3 → 4 : Pod IP:8000
    s.arrow([(bx + 140, 530), (bx + 140, 556)], REQUEST)            # 4 → 5
    s.text(bx + 152, 549, "token IDs (request queue)", 13, fill=REQUEST, halo=True)
    kv_mid = kv0 + (kv1 - kv0) / 2
    s.arrow([(kv_mid, 618), (kv_mid, my - 2)], REQUEST)             # 5 → 6
    s.arrow([(900, 148), (900, 438)], REQUEST, dash="9 6")          # P : port-forward
    s.text(888, 230, "P: one Pod picked by kubectl;", 13, fill=REQUEST, anchor="end", halo=True)
    s.text(888, 248, "no ClusterIP, no load balancing", 13, fill=REQUEST, anchor="end", halo=True)

    # ---- weights path (orange) --------------------------------------------
    s.arrow([(200, 1068), (200, 1016)], WEIGHTS)                    # A → B : hostPath
    s.text(212, 1050, f"hostPath {n.pv_host_path}", 13, fill=WEIGHTS, halo=True)
    s.arrow([(200, 930), (200, 882)], WEIGHTS)                      # B → C : bound
    s.text(212, 918, "bound one-to-one: PV claimRef + PVC volumeName", 13, fill=WEIGHTS, halo=True)
    s.arrow([(348, 842), (bx - 2, 842)], WEIGHTS)                   # C → D : the Pod's volume
    wx = mx + 75
    s.arrow([(wx, my2), (wx, my + mh + 2)], WEIGHTS)                # D → E : load safetensors
    s.text(wx + 12, 800, f"--model {n.model_path} → load *.safetensors", 13, "mono",
           fill=WEIGHTS, halo=True)

    # ---- owners (grey) ------------------------------------------------------
    s.arrow([(120, 686), (120, 706)], OWNER, width=2)
    s.arrow([(348, 740), (px - 2, 740)], OWNER, width=2)

    title = "The course's system: how a request reaches vLLM and how the weights get to the GPU"
    desc = (f"Request path: a client resolves {n.dns_name} to the ClusterIP of Service {n.service} "
            f"(port {n.service_port}); kube-proxy rules built from the ready endpoints of EndpointSlice "
            f"{n.service}-xxxxx send it to the Pod IP on port {n.container_port}; vLLM's OpenAI-compatible "
            f"API server passes token IDs to the EngineCore scheduler, which runs the batch on the GPU, "
            f"reading and writing the paged KV cache. "
            f"kubectl port-forward from a laptop tunnels through the API server and kubelet straight to one Pod. "
            f"Weights path: the node directory {n.host_model_dir} is exposed by hostPath PersistentVolume "
            f"{n.pv}, bound to PersistentVolumeClaim {n.pvc} in namespace {n.namespace}, mounted read-only at "
            f"{n.models_mount_path} in Deployment {n.deployment}'s Pod; vLLM loads the safetensors from "
            f"--model {n.model_path} into GPU memory. Deployment {n.deployment} creates a ReplicaSet, "
            f"which creates the Pod.")
    return s.render(title, desc)


def render(path: Path | None = None) -> Path:
    """Write the figure from today's manifests (default: ``book/figures/system.svg``)."""
    out = Path(path) if path else FIGURE_PATH
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_svg(system()), encoding="utf-8")
    return out


if __name__ == "__main__":  # python -m llmserve.system.figure
    print(f"wrote {render()}")
