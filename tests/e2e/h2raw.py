"""A bare gRPC-over-HTTP/2 client (Debian's python3-h2) for what grpcio will
not send: a request the client never finishes, a server-side deadline the
client does not enforce itself, a compressed flag without an encoding, an
odd :authority. Blocking, one connection, for tests."""

from __future__ import annotations

import socket
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


def frame(msg: bytes, compressed: bool = False) -> bytes:
    return struct.pack(">BI", 1 if compressed else 0, len(msg)) + msg


class Response:
    def __init__(self):
        self.headers: dict = {}
        self.trailers: dict = {}
        self.data = b""
        self.reset: int | None = None
        self.ended = False

    @property
    def status(self) -> int | None:
        """grpc-status from the trailers (or a trailers-only response)."""
        v = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return int(v) if v is not None else None

    @property
    def message(self) -> str:
        return self.trailers.get("grpc-message", self.headers.get("grpc-message", ""))


class H2Client:
    def __init__(self, host: str, port: int, timeout: float = 10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                      validate_outbound_headers=False,
                                      normalize_outbound_headers=False))
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24})
        self.conn.increment_flow_control_window(1 << 24)
        self._flush()
        self.responses: dict[int, Response] = {}
        self.authority = f"{host}:{port}"

    def _flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def start(self, path: str, body: bytes | None = None, end: bool = True,
              extra: list[tuple[str, str]] = (), authority: str | None = None) -> int:
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "http"), (":path", path),
                   (":authority", authority or self.authority), ("te", "trailers"),
                   ("content-type", "application/grpc"), *extra]
        self.conn.send_headers(sid, headers, end_stream=body is None and end)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=end)
        self.responses[sid] = Response()
        self._flush()
        return sid

    def wait(self, sid: int, timeout: float) -> Response:
        """Reads until stream sid ends (trailers, END_STREAM or a reset)."""
        deadline = time.monotonic() + timeout
        r = self.responses[sid]
        while not r.ended:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"stream {sid} not answered within {timeout} s")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise ConnectionError("the server closed the connection")
            for ev in self.conn.receive_data(chunk):
                got = self.responses.get(getattr(ev, "stream_id", 0))
                if got is None:
                    continue
                if isinstance(ev, h2.events.ResponseReceived):
                    got.headers = dict(ev.headers)
                    if ev.stream_ended is not None:
                        got.ended = True
                elif isinstance(ev, h2.events.TrailersReceived):
                    got.trailers = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    got.data += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    got.ended = True
                elif isinstance(ev, h2.events.StreamReset):
                    got.reset = ev.error_code
                    got.ended = True
            self._flush()
        return r

    def close(self):
        try:
            self.conn.close_connection()
            self._flush()
        except OSError:
            pass
        self.sock.close()
