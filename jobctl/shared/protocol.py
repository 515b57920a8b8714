"""The request/response protocol of a shared supervisor's socket (SPEC section 12).

One request and one response per connection. Each message is a 4-byte big-endian length followed
by that many bytes of UTF-8 JSON (an object). A request is

    {"version": 1, "op": "status_rows", "args": {...}}

and a response is either {"version": 1, "ok": true, "result": ...} or
{"version": 1, "ok": false, "error": "one line", "exit_code": 1}.

The caller is whoever the kernel says is at the other end (SO_PEERCRED: pid, uid, gid); a request
never names its user, and one that tries (`uid`, `user`, `gid` among its top-level keys or in its
`args`) is refused. Messages are capped (MAX_MESSAGE) and each read has a deadline (READ_TIMEOUT), so
a slow or hostile client holds one thread of the supervisor for a bounded time, never the queue.
A connection that sends the single byte `w` and closes is a wake-up (runners and single-user
clients send it); it carries no request.
"""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass
from typing import Any

VERSION = 1
MAX_MESSAGE = 1 << 20  # bytes: a request is a few KiB (a launch with its job spec); a status list of 100k jobs fits
MAX_RESPONSE = 256 << 20  # bytes: what a client accepts back (a status of every job of a big queue)
READ_TIMEOUT = 10.0  # seconds for a whole request to arrive
HEADER = struct.Struct(">I")
IDENTITY_KEYS = ("uid", "gid", "user", "pid", "groups")  # the kernel says who the caller is, never the caller
# the launch options a client sends with its job files (`launch` op), and all the supervisor reads
LAUNCH_OPTIONS = (
    "name",
    "cpus",
    "memory",
    "gpus",
    "num_nodes",
    "array",
    "backend",
    "priority",
    "dry_run",
    "queue",
    "hold",
    "at",
)


class ProtocolError(Exception):
    """A message that does not follow the protocol; the text is one line for the other side."""


@dataclass(frozen=True)
class Peer:
    """Who is at the other end of a unix socket, as the kernel says (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


def peer_of(sock: socket.socket) -> Peer:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return Peer(pid, uid, gid)


def encode(message: dict[str, Any], limit: int = MAX_RESPONSE) -> bytes:
    body = json.dumps(message, separators=(",", ":"), default=str).encode()
    if len(body) > limit:
        raise ProtocolError(f"message of {len(body)} bytes is larger than the limit of {limit} bytes")
    return HEADER.pack(len(body)) + body


def send(sock: socket.socket, message: dict[str, Any], limit: int = MAX_RESPONSE) -> None:
    sock.sendall(encode(message, limit))


def _read_exactly(sock: socket.socket, size: int, first: bytes = b"") -> bytes:
    chunks = [first]
    got = len(first)
    while got < size:
        chunk = sock.recv(min(size - got, 1 << 16))
        if not chunk:
            raise ProtocolError(f"connection closed after {got} of {size} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(sock: socket.socket, limit: int = MAX_MESSAGE) -> dict[str, Any] | None:
    """One message; None for a wake-up (`w`, then the end of the connection). Raises ProtocolError."""
    first = sock.recv(HEADER.size)
    if not first:
        raise ProtocolError("nothing received")
    if first == b"w":
        more = sock.recv(1)
        if not more:
            return None
        first += more
    header = _read_exactly(sock, HEADER.size, first)
    (size,) = HEADER.unpack(header)
    if size > limit:
        raise ProtocolError(f"message of {size} bytes is larger than the limit of {limit} bytes")
    body = _read_exactly(sock, size)
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise ProtocolError("not a JSON message (expected a 4-byte length, then a JSON object)") from None
    if not isinstance(value, dict):
        raise ProtocolError("not a JSON object")
    return value


def check_request(request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(op, args) of a well-formed request; ProtocolError (one line) for anything else."""
    version = request.get("version")
    if version != VERSION:
        raise ProtocolError(
            f"protocol version {json.dumps(version)[:20]} is not spoken here (this supervisor speaks version "
            f"{VERSION}); use the jobctl release the queue runs"
        )
    op = request.get("op")
    if not isinstance(op, str) or not op:
        raise ProtocolError('a request needs an "op" (a string)')
    args = request.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError('"args" must be a JSON object')
    claimed = [k for k in IDENTITY_KEYS if k in request or k in args]
    if claimed:
        raise ProtocolError(
            f"a request may not say who sends it ({claimed[0]!r}); the supervisor asks the kernel (SO_PEERCRED)"
        )
    return op, args


def request(path: str, op: str, args: dict[str, Any] | None = None, timeout: float | None = 30.0) -> dict[str, Any]:
    """Send one request to the socket at `path` and return the response (a dict with `ok`).

    Raises OSError when nobody answers and ProtocolError for a response that is not one.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5.0)
        sock.connect(path)
        server = peer_of(sock)
        if server.uid != 0:
            raise ProtocolError(
                f"{path}: answered by a process of uid {server.uid}, not by root's shared supervisor; refusing to talk to it"
            )
        send(sock, {"version": VERSION, "op": op, "args": args or {}}, MAX_MESSAGE)
        sock.settimeout(timeout)
        try:
            response = receive(sock, MAX_RESPONSE)
        except ProtocolError as exc:  # the supervisor died (kill -9, a restart) while it answered
            raise ProtocolError(
                f"the supervisor closed the connection without a complete answer ({exc}); it may have "
                "restarted meanwhile: `jobctl status` shows whether this was done"
            ) from None
    if response is None or not isinstance(response.get("ok"), bool):
        raise ProtocolError("the supervisor's answer is not a response")
    return response
