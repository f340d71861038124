"""One client connection carrying many kinds of calls at once, as etcd's
clients make them: unary KV calls (which keel's HTTP/2 front serves itself)
beside watch and lease streams and other unary calls (which it relays to
gRPC C++), large messages through the flow-control windows, and calls the
client abandons. The same on etcd and keel; and keel with the front off
(--experimental-grpc-front=false) still serves everything."""

from __future__ import annotations

import queue
import struct
import threading
import time

import grpc
import pytest
from etcd3 import etcdrpc

from cluster import wait_for
from h2raw import H2Client, frame

UNLIMITED = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


def prefix_end(p: bytes) -> bytes:
    return p[:-1] + bytes([p[-1] + 1])


class Watch:
    """A Watch stream on `channel` whose responses a thread collects."""

    def __init__(self, channel, create: etcdrpc.WatchCreateRequest):
        self.requests: queue.Queue = queue.Queue()
        self.requests.put(etcdrpc.WatchRequest(create_request=create))
        self.events: list = []
        self.created = threading.Event()
        self.error = None
        self.lock = threading.Lock()
        self.call = etcdrpc.WatchStub(channel).Watch(self._requests())
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _requests(self):
        while True:
            r = self.requests.get()
            if r is None:
                return
            yield r

    def _read(self):
        try:
            for resp in self.call:
                if resp.created:
                    self.created.set()
                with self.lock:
                    self.events.extend(resp.events)
        except grpc.RpcError as e:
            self.error = e

    def count(self) -> int:
        with self.lock:
            return len(self.events)

    def close(self):
        self.requests.put(None)
        self.call.cancel()
        self.thread.join(10)


@pytest.fixture
def channel(member):
    ch = grpc.insecure_channel(member.endpoint, options=UNLIMITED)
    yield ch
    ch.close()


def test_unary_and_streams_share_one_connection(channel, uniq):
    p = uniq.encode()
    kv = etcdrpc.KVStub(channel)
    lease = etcdrpc.LeaseStub(channel)
    w = Watch(channel, etcdrpc.WatchCreateRequest(key=p, range_end=prefix_end(p)))
    try:
        assert w.created.wait(10), "the watch was never created"
        granted = lease.LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=60), timeout=10)
        n = 300
        puts = [kv.Put.future(etcdrpc.PutRequest(key=p + b"%04d" % i, value=b"v%d" % i,
                                                 lease=granted.ID if i % 3 == 0 else 0),
                              timeout=30)
                for i in range(n)]
        # while those are in flight, more calls of every kind on the same connection
        ranges = [kv.Range.future(etcdrpc.RangeRequest(key=p, range_end=prefix_end(p),
                                                       serializable=i % 2 == 0), timeout=30)
                  for i in range(50)]
        ttls = [lease.LeaseTimeToLive.future(etcdrpc.LeaseTimeToLiveRequest(ID=granted.ID),
                                              timeout=30) for _ in range(20)]
        revs = sorted(f.result().header.revision for f in puts)
        assert len(set(revs)) == n, "every put has its own revision"
        for f in ranges:
            assert f.result().header.revision >= 1
        for f in ttls:
            assert f.result().TTL > 0
        wait_for(lambda: w.count() >= n, 20, f"{n} watch events")
        assert w.error is None, w.error
        with w.lock:
            got = [(e.kv.key, e.kv.value, e.kv.mod_revision) for e in w.events]
        assert [r for _, _, r in got] == revs, "events in revision order, none lost or repeated"
        assert sorted(k for k, _, _ in got) == [p + b"%04d" % i for i in range(n)]
        resp = kv.Range(etcdrpc.RangeRequest(key=p, range_end=prefix_end(p)), timeout=10)
        assert resp.count == n
        txn = kv.Txn(etcdrpc.TxnRequest(
            compare=[etcdrpc.Compare(key=p + b"0000", result=etcdrpc.Compare.EQUAL,
                                     target=etcdrpc.Compare.VALUE, value=b"v0")],
            success=[etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(
                key=p, range_end=prefix_end(p)))]), timeout=10)
        assert txn.succeeded and txn.responses[0].response_delete_range.deleted == n
        wait_for(lambda: w.count() >= 2 * n, 20, f"{n} delete events")
        lease.LeaseRevoke(etcdrpc.LeaseRevokeRequest(ID=granted.ID), timeout=10)
    finally:
        w.close()


def test_large_messages_through_the_windows(channel, uniq):
    """Values near the request limit, a range and a watch of many of them
    (megabytes more than any HTTP/2 window) on one connection."""
    p = uniq.encode()
    kv = etcdrpc.KVStub(channel)
    n, size = 12, 1 << 20
    values = [bytes([65 + i]) * size for i in range(n)]
    first = None
    for i, v in enumerate(values):
        rev = kv.Put(etcdrpc.PutRequest(key=p + b"%02d" % i, value=v), timeout=20).header.revision
        first = first or rev
    resp = kv.Range(etcdrpc.RangeRequest(key=p, range_end=prefix_end(p)), timeout=20)
    assert [kvs.value for kvs in resp.kvs] == values
    watches = [Watch(channel, etcdrpc.WatchCreateRequest(key=p, range_end=prefix_end(p),
                                                         start_revision=first))
               for _ in range(3)]
    try:
        for w in watches:
            wait_for(lambda: w.count() >= n or w.error is not None, 30, f"{n} large events")
            assert w.error is None, w.error
            with w.lock:
                assert [e.kv.value for e in w.events[:n]] == values
    finally:
        for w in watches:
            w.close()
    # a response larger than the client's window, while a put goes by
    big = kv.Range.future(etcdrpc.RangeRequest(key=p, range_end=prefix_end(p)), timeout=20)
    kv.Put(etcdrpc.PutRequest(key=p[:-1] + b"~other", value=b"small"), timeout=10)  # outside p
    assert len(big.result().kvs) == n


def test_abandoned_calls_leave_the_connection_serving(member, channel, uniq):
    p = uniq.encode()
    kv = etcdrpc.KVStub(channel)
    # calls whose deadline passes before they can be answered, and calls
    # cancelled in flight, native and relayed
    for i in range(50):
        try:
            kv.Put(etcdrpc.PutRequest(key=p + b"t%d" % i, value=b"x"), timeout=0.0005)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e
    futures = [kv.Range.future(etcdrpc.RangeRequest(key=p), timeout=10) for _ in range(50)]
    futures += [etcdrpc.LeaseStub(channel).LeaseTimeToLive.future(
        etcdrpc.LeaseTimeToLiveRequest(ID=1), timeout=10) for _ in range(20)]
    for f in futures:
        f.cancel()
    watches = [Watch(channel, etcdrpc.WatchCreateRequest(key=p)) for _ in range(20)]
    for w in watches:
        w.close()
    # a connection closed with calls and streams open
    other = grpc.insecure_channel(member.endpoint)
    ws = [Watch(other, etcdrpc.WatchCreateRequest(key=p)) for _ in range(5)]
    for w in ws:
        assert w.created.wait(10)
    [etcdrpc.KVStub(other).Put.future(etcdrpc.PutRequest(key=p + b"o", value=b"o"), timeout=10)
     for _ in range(20)]
    other.close()
    for w in ws:
        w.thread.join(10)
    # the first connection still serves every kind of call
    rev = kv.Put(etcdrpc.PutRequest(key=p + b"after", value=b"yes"), timeout=10).header.revision
    assert kv.Range(etcdrpc.RangeRequest(key=p + b"after"), timeout=10).kvs[0].value == b"yes"
    w = Watch(channel, etcdrpc.WatchCreateRequest(key=p + b"after", start_revision=rev))
    try:
        wait_for(lambda: w.count() >= 1, 10, "the watch event")
    finally:
        w.close()
    member.check_alive()


@pytest.mark.keel_only(reason="--experimental-grpc-front is keel's")
def test_front_off_serves_everything(make_cluster, uniq):
    m = make_cluster(1, extra_flags={"experimental-grpc-front": "false"})[0]
    p = uniq.encode()
    ch = grpc.insecure_channel(m.endpoint)
    try:
        kv = etcdrpc.KVStub(ch)
        rev = kv.Put(etcdrpc.PutRequest(key=p, value=b"v"), timeout=10).header.revision
        assert kv.Range(etcdrpc.RangeRequest(key=p), timeout=10).kvs[0].value == b"v"
        w = Watch(ch, etcdrpc.WatchCreateRequest(key=p, start_revision=rev))
        try:
            wait_for(lambda: w.count() >= 1, 10, "the watch event")
            assert w.events[0].kv.value == b"v"
        finally:
            w.close()
    finally:
        ch.close()
    assert m.ctl_ok("get", uniq, "--print-value-only").out == "v\n"


# ---- the wire, with a bare HTTP/2 client (h2raw.py) ----

PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"


@pytest.fixture
def raw(member):
    c = H2Client("127.0.0.1", member.client_port)
    yield c
    c.close()


def test_raw_unary_calls_and_errors(raw, uniq):
    p = uniq.encode()
    ok = raw.wait(raw.start(PUT, frame(etcdrpc.PutRequest(key=p, value=b"v").SerializeToString())), 10)
    assert ok.headers.get(":status") == "200" and ok.status == 0, (ok.headers, ok.trailers)
    assert ok.data[:1] == b"\0"
    rev = etcdrpc.PutResponse.FromString(ok.data[5:]).header.revision
    got = raw.wait(raw.start(RANGE, frame(etcdrpc.RangeRequest(key=p).SerializeToString())), 10)
    assert got.status == 0
    kvs = etcdrpc.RangeResponse.FromString(got.data[5:]).kvs
    assert [(kv.key, kv.value, kv.mod_revision) for kv in kvs] == [(p, b"v", rev)]
    # an :authority with a scheme in it, as etcdctl sends with --cluster endpoints
    odd = raw.wait(raw.start(RANGE, frame(etcdrpc.RangeRequest(key=p).SerializeToString()),
                             authority=f"http://{raw.authority}"), 10)
    assert odd.status == 0
    # etcd's own error, with its message
    empty = raw.wait(raw.start(PUT, frame(etcdrpc.PutRequest(key=b"").SerializeToString())), 10)
    assert empty.status == 3 and empty.message == "etcdserver: key is not provided", (
        empty.headers, empty.trailers)
    # a compressed flag with no grpc-encoding: refused as gRPC-Go refuses it
    comp = raw.wait(raw.start(RANGE, frame(etcdrpc.RangeRequest(key=p).SerializeToString(),
                                           compressed=True)), 10)
    assert comp.status == 13, (comp.headers, comp.trailers)
    # bytes that are not a request
    bad = raw.wait(raw.start(RANGE, frame(b"\xff\xff\xff\xff\x0f\x01")), 10)
    assert bad.status == 13


def test_oversized_message_refused_before_its_body(raw, uniq):
    """A message declared larger than the member takes is answered at once,
    without the client sending (or the server buffering) its body."""
    head = struct.pack(">BI", 0, 100 << 20) + b"x" * 1000
    r = raw.wait(raw.start(PUT, head, end=False), 10)
    assert r.status == 8, (r.headers, r.trailers)  # RESOURCE_EXHAUSTED
    ok = raw.wait(raw.start(PUT, frame(etcdrpc.PutRequest(key=uniq.encode(), value=b"v")
                                       .SerializeToString())), 10)
    assert ok.status == 0


def test_server_answers_at_the_grpc_timeout(make_cluster, uniq):
    """A write that cannot commit (no quorum) is answered when the client's
    grpc-timeout passes, not at the member's own request timeout."""
    c = make_cluster(3)
    c.wait_leader(20)
    m = c[0]
    for other in c.members[1:]:
        other.kill()
    raw = H2Client("127.0.0.1", m.client_port)
    try:
        start = time.monotonic()
        sid = raw.start(PUT, frame(etcdrpc.PutRequest(key=uniq.encode(), value=b"v")
                                   .SerializeToString()), extra=[("grpc-timeout", "500m")])
        r = raw.wait(sid, 6)
        took = time.monotonic() - start
        # gRPC's DEADLINE_EXCEEDED (keel); etcd's own "request timed out"
        # (UNAVAILABLE) from the call's context
        assert r.status in (4, 14), (r.headers, r.trailers)
        assert took < 4, f"answered after {took:.1f} s"
    finally:
        raw.close()


def test_lease_keepalive_stream_answers_in_order(channel):
    """One keepalive stream: each request answered in order, an unknown
    lease with TTL 0 (the stream goes on), the stream ending OK when the
    client ends it; beside unary calls on the same connection."""
    lease = etcdrpc.LeaseStub(channel)
    kv = etcdrpc.KVStub(channel)
    ids = [lease.LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=30 + i), timeout=10).ID
           for i in range(3)]
    unknown = max(ids) + 12345
    asked = [ids[0], unknown, ids[1], ids[2], ids[0]] * 20
    try:
        call = lease.LeaseKeepAlive(iter([etcdrpc.LeaseKeepAliveRequest(ID=i) for i in asked]),
                                    timeout=20)
        got = []
        for resp in call:
            got.append((resp.ID, resp.TTL))
            if len(got) % 25 == 0:
                kv.Range(etcdrpc.RangeRequest(key=b"x"), timeout=10)
        assert [i for i, _ in got] == asked
        for (i, ttl) in got:
            if i == unknown:
                assert ttl == 0
            else:
                assert 30 <= ttl <= 32, (i, ttl)
        assert call.code() == grpc.StatusCode.OK
    finally:
        for i in ids:
            lease.LeaseRevoke(etcdrpc.LeaseRevokeRequest(ID=i), timeout=10)


def test_keepalive_stream_ends_at_its_grpc_timeout(raw, member):
    """A keepalive stream the client keeps open past its grpc-timeout is
    ended by the server, after answering what came before."""
    c = member.client()
    try:
        lease_id = c.lease(60).id
    finally:
        c.close()
    req = frame(etcdrpc.LeaseKeepAliveRequest(ID=lease_id).SerializeToString())
    start = time.monotonic()
    sid = raw.start("/etcdserverpb.Lease/LeaseKeepAlive", req, end=False,
                    extra=[("grpc-timeout", "400m")])
    r = raw.wait(sid, 6)
    took = time.monotonic() - start
    assert took < 4, f"ended after {took:.1f} s"
    assert r.data[:1] == b"\0"
    got = etcdrpc.LeaseKeepAliveResponse.FromString(r.data[5:5 + struct.unpack(">I", r.data[1:5])[0]])
    assert got.ID == lease_id and got.TTL > 0
    # DEADLINE_EXCEEDED in the trailers, or the stream reset (gRPC-Go)
    assert r.status == 4 or r.reset is not None, (r.headers, r.trailers, r.reset)
