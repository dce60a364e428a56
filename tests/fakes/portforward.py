"""The server side of ``kubectl port-forward`` over WebSocket, as the API server and kubelet speak it.

The fake API server hands a ``GET …/pods/<pod>/portforward?ports=N`` with
``Upgrade: websocket`` to :func:`serve`. What it does, and where that comes from:

* the handshake of RFC 6455 (``Sec-WebSocket-Accept``) with the subprotocol
  ``v4.channel.k8s.io``: the kubelet offers only the v4 protocols
  (pkg/kubelet/cri/streaming/portforward/websocket.go, ``handleWebSocketStreams``);
  the Python client asks for v5 or v4 (kubernetes/stream/ws_client.py);
* two channels per port: data ``2i`` and error ``2i+1``; each first carries the
  port as an unsigned 16-bit little-endian number; then data frames carry the
  channel byte followed by the bytes (the same file; the client's
  ``PortForward._proxy`` checks each of these);
* when the runtime cannot reach the port, the kubelet writes
  ``error forwarding port <port> to pod <sandbox id>, uid <uid>: <cause>`` on the
  error channel and closes both (websocket.go, ``portForward``); containerd words
  the cause ``failed to connect to localhost:<port> inside namespace <id>: <dial error>``
  (internal/cri/server/sandbox_portforward_linux.go).

Every loop here is bounded: a socket timeout on each read, and a stop event the
server sets when it shuts down.
"""
from __future__ import annotations

import base64
import hashlib
import select
import socket
import struct
import threading
from dataclasses import dataclass

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PROTOCOL = "v4.channel.k8s.io"
OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x2, 0x8, 0x9, 0xA
SANDBOX_ID = "5f0c6a1e" * 8   # a CRI pod-sandbox id: the kubelet's message names it, not the Pod


@dataclass
class PodPort:
    """What the kubelet finds behind one Pod port: a listening address, or nothing."""

    address: tuple[str, int] | None = None     # where the stand-in process listens (None: nothing listens)
    kubelet_error: str | None = None           # send this exact text on the error channel instead


def refused_text(port: int) -> str:
    """The kubelet's message when nothing listens on ``port`` in the Pod (containerd's cause)."""
    cause = (f"failed to connect to localhost:{port} inside namespace {SANDBOX_ID}: "
             f"dial tcp 127.0.0.1:{port}: connect: connection refused")
    return f"error forwarding port {port} to pod {SANDBOX_ID}, uid : {cause}"


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def send_frame(sock: socket.socket, payload: bytes, opcode: int = OP_BINARY) -> None:
    """One unmasked server frame (RFC 6455 section 5.2)."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    sock.sendall(head + payload)


def parse_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The complete client frames at the start of ``buf`` (clients mask theirs), and the rest."""
    frames = []
    while len(buf) >= 2:
        opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, at = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, at = struct.unpack("!Q", buf[2:10])[0], 10
        masked = bool(buf[1] & 0x80)
        mask = buf[at:at + 4] if masked else b"\0\0\0\0"
        at += 4 if masked else 0
        if len(buf) < at + n:
            break
        frames.append((opcode, bytes(c ^ mask[i % 4] for i, c in enumerate(buf[at:at + n]))))
        buf = buf[at + n:]
    return frames, buf


def handshake(handler) -> bool:
    """Answer the upgrade with 101 and the v4 subprotocol; False (and a 400) if it is not a v4 WebSocket."""
    key = handler.headers.get("Sec-WebSocket-Key")
    offered = [p.strip() for p in (handler.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
    if (handler.headers.get("Upgrade") or "").lower() != "websocket" or not key or PROTOCOL not in offered:
        handler.send_response(400)
        body = b"this fake speaks only the v4.channel.k8s.io WebSocket protocol"
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        return False
    handler.send_response(101, "Switching Protocols")
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", accept_key(key))
    handler.send_header("Sec-WebSocket-Protocol", PROTOCOL)
    handler.end_headers()
    handler.wfile.flush()
    return True


def serve(handler, port: int, pod_port: PodPort, stop: threading.Event, timeout_s: float = 0.2) -> None:
    """Relay one port-forward stream between the WebSocket and ``pod_port`` until either side ends."""
    sock: socket.socket = handler.connection
    lo_hi = struct.pack("<H", port)
    send_frame(sock, b"\x00" + lo_hi)
    send_frame(sock, b"\x01" + lo_hi)
    error = pod_port.kubelet_error
    target = None
    if error is None:
        try:
            target = socket.create_connection(pod_port.address, timeout=2) if pod_port.address else None
        except OSError:
            target = None
        if target is None:
            error = refused_text(port)
    if error is not None:
        send_frame(sock, b"\x01" + error.encode())
        send_frame(sock, struct.pack("!H", 1000), OP_CLOSE)
        return
    try:
        _relay(sock, target, stop, timeout_s)
    finally:
        target.close()


def _relay(sock, target, stop: threading.Event, timeout_s: float) -> None:
    # The client sends no frame before it has read the 101, so nothing of the
    # stream is left in the HTTP handler's read buffer: read the socket itself.
    pending = b""
    while not stop.is_set():
        readable, _, _ = select.select([sock, target], [], [], timeout_s)
        if target in readable:
            data = target.recv(65536)
            if not data:   # the process in the Pod closed: end the stream as the kubelet does
                send_frame(sock, struct.pack("!H", 1000), OP_CLOSE)
                return
            send_frame(sock, b"\x00" + data)
        if sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            frames, pending = parse_frames(pending + data)
            for opcode, payload in frames:
                if opcode == OP_CLOSE:
                    send_frame(sock, payload[:2], OP_CLOSE)
                    return
                if opcode == OP_PING:
                    send_frame(sock, payload, OP_PONG)
                elif opcode == OP_BINARY and payload[:1] == b"\x00" and len(payload) > 1:
                    target.sendall(payload[1:])
