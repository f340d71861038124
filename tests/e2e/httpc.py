"""HTTP/1.1 helpers for the gateway and health tests (standard library only)."""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Optional


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers  # names lowercased
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.headers}, {self.body[:300]!r})"


def request(member, method: str, path: str, body=None, *, headers: Optional[dict] = None,
            timeout: float = 10) -> Reply:
    """One request on a fresh connection to the member's client URL. A dict or list
    body is sent as JSON."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    conn = http.client.HTTPConnection("127.0.0.1", member.client_port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def post(member, path: str, body=None, **kw) -> Reply:
    return request(member, "POST", path, {} if body is None else body, **kw)


def post_ok(member, path: str, body=None, **kw) -> dict:
    r = post(member, path, body, **kw)
    assert r.status == 200, r
    return r.json()


class Stream:
    """A streaming POST (watch, keepalive, observe): read its newline-delimited JSON
    objects one at a time, with a deadline each."""

    def __init__(self, member, path: str, body, timeout: float = 10):
        self.conn = http.client.HTTPConnection("127.0.0.1", member.client_port, timeout=timeout)
        self.conn.request("POST", path, body=body if isinstance(body, str) else json.dumps(body))
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}

    def next(self) -> dict:
        line = self.resp.readline()
        assert line, "stream ended"
        return json.loads(line)

    def close(self) -> None:
        self.conn.close()


def raw(member, data: bytes, timeout: float = 10) -> bytes:
    """Sends raw bytes; returns everything the server answers until it closes."""
    s = socket.create_connection(("127.0.0.1", member.client_port), timeout=timeout)
    out = b""
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (and closed) before reading it all
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out
    except ConnectionResetError:
        return out
    finally:
        s.close()
