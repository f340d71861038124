"""etcd's Watch messages as of API 3.5 (watch_id, fragment, progress requests),
built at import time from the repo's proto/ with protoc into a private
descriptor pool: python3-etcd3's own copy predates those fields, and a private
pool cannot clash with it.  RawWatch is one Watch stream over plain gRPC."""

from __future__ import annotations

import queue
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto"


def _load():
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "set.pb"
        subprocess.run(["protoc", f"-I{PROTO_ROOT}", "--include_imports",
                        f"--descriptor_set_out={out}", "etcdserverpb/rpc.proto"], check=True)
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    factory = message_factory.MessageFactory(pool)
    return {name: factory.GetPrototype(pool.FindMessageTypeByName(name))
            for name in ("etcdserverpb.WatchRequest", "etcdserverpb.WatchResponse",
                         "etcdserverpb.WatchCreateRequest")}


_M = _load()
WatchRequest = _M["etcdserverpb.WatchRequest"]
WatchResponse = _M["etcdserverpb.WatchResponse"]
NOPUT = 0
NODELETE = 1
PUT = 0
DELETE = 1


class StreamEnded(Exception):
    def __init__(self, err):
        super().__init__(repr(err))
        self.err = err


class RawWatch:
    """A Watch stream: send() requests, next() responses (with a deadline).

    With read=False nothing is taken off the wire until read_all() / next()
    is called... (gRPC python receives a message only when asked), so the
    server sees a client that does not read."""

    def __init__(self, endpoint: str, metadata: Optional[list] = None):
        self.channel = grpc.insecure_channel(endpoint, options=[
            ("grpc.max_receive_message_length", 64 << 20)])
        call = self.channel.stream_stream(
            "/etcdserverpb.Watch/Watch",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=WatchResponse.FromString)
        self._reqs: queue.Queue = queue.Queue()
        self._it = call(iter(self._reqs.get, None), metadata=metadata)
        self._out: queue.Queue = queue.Queue()
        self._pull = threading.Semaphore(0)
        self.reading = True
        self._thread = threading.Thread(target=self._reader, daemon=True)
        self._thread.start()

    def _reader(self):
        try:
            while True:
                if not self.reading:
                    self._pull.acquire()
                    continue
                self._out.put(next(self._it))
        except StopIteration:
            self._out.put(StreamEnded(None))
        except grpc.RpcError as e:
            self._out.put(StreamEnded(e))

    def pause(self):
        """Stops taking responses off the wire (after the one being read)."""
        self.reading = False

    def resume(self):
        self.reading = True
        self._pull.release()

    def send(self, **kw):
        self._reqs.put(WatchRequest(**kw))

    def create(self, key: bytes, range_end: bytes = b"", **kw):
        self.send(create_request=dict(key=key, range_end=range_end, **kw))

    def cancel(self, watch_id: int):
        self.send(cancel_request=dict(watch_id=watch_id))

    def progress(self):
        self.send(progress_request={})

    def next(self, timeout: float = 10):
        try:
            r = self._out.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no watch response within {timeout} s") from None
        if isinstance(r, StreamEnded):
            raise r
        return r

    def events_until(self, count: int, timeout: float = 20, watch_id: Optional[int] = None):
        """Responses until `count` events arrived; returns (events, responses)."""
        import time
        deadline = time.monotonic() + timeout
        evs, resps = [], []
        while len(evs) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(evs)} of {count} events within {timeout} s")
            r = self.next(left)
            resps.append(r)
            if watch_id is None or r.watch_id == watch_id:
                evs.extend(r.events)
        return evs, resps

    def close(self):
        self._reqs.put(None)
        self._it.cancel()
        self.resume()
        self.channel.close()
