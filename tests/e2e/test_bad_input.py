"""Odd and malformed requests: the answers etcd gives, and a member that keeps serving."""

import os
import socket
import time

import grpc
import pytest
from etcd3 import etcdrpc

NO_KEY = "etcdserver: key is not provided"


@pytest.fixture
def kv(member):
    c = member.client()
    yield c
    c.close()


def put_abc(kv, uniq):
    for n in "abc":
        kv.put(uniq + n, n)
    return [(uniq + n).encode() for n in "abc"]


def cur_rev(kv) -> int:
    return kv.kvstub.Range(etcdrpc.RangeRequest(key=b"/no-such-key"), timeout=5).header.revision


def test_range_end_before_key_is_empty(kv, uniq):
    a, b, c = put_abc(kv, uniq)
    rev = cur_rev(kv)
    resp = kv.kvstub.Range(etcdrpc.RangeRequest(key=c, range_end=a), timeout=5)
    assert resp.count == 0 and len(resp.kvs) == 0 and not resp.more
    assert resp.header.revision == rev
    resp = kv.kvstub.Range(etcdrpc.RangeRequest(key=c, range_end=a, count_only=True), timeout=5)
    assert resp.count == 0
    # the python helper agrees
    assert list(kv.get_range(c, a)) == []
    # a delete over an inverted range deletes nothing and makes no revision
    resp = kv.kvstub.DeleteRange(etcdrpc.DeleteRangeRequest(key=c, range_end=a, prev_kv=True), timeout=5)
    assert resp.deleted == 0 and len(resp.prev_kvs) == 0
    assert cur_rev(kv) == rev
    assert kv.kvstub.Range(etcdrpc.RangeRequest(key=a, range_end=c + b"\0"), timeout=5).count == 3


def test_empty_key_with_range_end(kv, uniq):
    for req in (etcdrpc.RangeRequest(key=b"", range_end=b"z"),
                etcdrpc.RangeRequest(key=b"")):
        with pytest.raises(grpc.RpcError) as ei:
            kv.kvstub.Range(req, timeout=5)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and ei.value.details() == NO_KEY
    with pytest.raises(grpc.RpcError) as ei:
        kv.kvstub.DeleteRange(etcdrpc.DeleteRangeRequest(key=b"", range_end=b"z"), timeout=5)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and ei.value.details() == NO_KEY
    # a compare on the empty key
    with pytest.raises(grpc.RpcError) as ei:
        kv.kvstub.Txn(etcdrpc.TxnRequest(compare=[etcdrpc.Compare(key=b"", target=0, result=0, version=1)]),
                      timeout=5)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and ei.value.details() == NO_KEY
    # "\0" is a key like any other; "\0".."\0" is the whole keyspace
    kv.kvstub.Put(etcdrpc.PutRequest(key=b"\0", value=b"nul"), timeout=5)
    resp = kv.kvstub.Range(etcdrpc.RangeRequest(key=b"\0"), timeout=5)
    assert [(x.key, x.value) for x in resp.kvs] == [(b"\0", b"nul")]
    put_abc(kv, uniq)
    everything = kv.kvstub.Range(etcdrpc.RangeRequest(key=b"\0", range_end=b"\0", keys_only=True), timeout=5)
    keys = [x.key for x in everything.kvs]
    assert keys[0] == b"\0" and (uniq + "c").encode() in keys and keys == sorted(keys)
    kv.kvstub.DeleteRange(etcdrpc.DeleteRangeRequest(key=b"\0"), timeout=5)


def test_huge_and_negative_limits(kv, uniq):
    a, b, c = put_abc(kv, uniq)
    end = c + b"\0"
    for limit in (2 ** 62, 2 ** 63 - 1, 3, 0, -1, -(2 ** 63)):
        resp = kv.kvstub.Range(etcdrpc.RangeRequest(key=a, range_end=end, limit=limit), timeout=5)
        assert [x.key for x in resp.kvs] == [a, b, c], limit
        assert resp.count == 3 and not resp.more, limit
    resp = kv.kvstub.Range(etcdrpc.RangeRequest(key=a, range_end=end, limit=1), timeout=5)
    assert [x.key for x in resp.kvs] == [a] and resp.more and resp.count == 3


def test_negative_revision_reads_current(kv, uniq):
    a, _, _ = put_abc(kv, uniq)
    kv.put(uniq + "a", "a2")
    for rev in (-1, -(2 ** 62), 0):
        resp = kv.kvstub.Range(etcdrpc.RangeRequest(key=a, revision=rev), timeout=5)
        assert [x.value for x in resp.kvs] == [b"a2"], rev


def test_unknown_lease(kv, uniq):
    with pytest.raises(grpc.RpcError) as ei:
        kv.kvstub.Put(etcdrpc.PutRequest(key=(uniq + "k").encode(), value=b"v", lease=0x1234567), timeout=5)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    assert ei.value.details() == "etcdserver: requested lease not found"
    assert kv.get(uniq + "k") == (None, None)


def test_malformed_grpc(member, kv, uniq):
    ch = grpc.insecure_channel(member.endpoint)
    try:
        ident = dict(request_serializer=lambda x: x, response_deserializer=lambda x: x)
        raw = ch.unary_unary("/etcdserverpb.KV/Range", **ident)
        with pytest.raises(grpc.RpcError) as ei:
            raw(b"\xff\xff\xff\xff\x0f\x01", timeout=5)  # not a protobuf message
        assert ei.value.code() == grpc.StatusCode.INTERNAL
        for path in ("/etcdserverpb.KV/Nope", "/etcdserverpb.Nope/Range"):
            with pytest.raises(grpc.RpcError) as ei:
                ch.unary_unary(path, **ident)(b"", timeout=5)
            assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED, path
    finally:
        ch.close()
    assert_serving(member, uniq)


def assert_serving(member, uniq: str) -> None:
    member.check_alive()
    k = uniq + "alive"
    member.ctl_ok("put", k, "yes")
    assert member.ctl_ok("get", k, "--print-value-only").out == "yes\n"


def read_until_closed(s: socket.socket, limit: float = 5.0) -> bytes:
    s.settimeout(0.2)
    out = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


def test_raw_tcp_garbage(member, uniq):
    host, port = "127.0.0.1", member.client_port
    payloads = [
        os.urandom(4096),
        b"\x00" * 100000,
        b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /etcdserverpb.KV/Range HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(2048),  # HTTP/2 preface, then noise
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x12\x04\x00\x00\x00\x00\x00",  # a truncated SETTINGS frame
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(64),  # a TLS ClientHello start
    ]
    for p in payloads:
        with socket.create_connection((host, port), timeout=5) as s:
            try:
                s.sendall(p)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server may close on us mid-send: fine
            read_until_closed(s, 3.0)
        member.check_alive()
    # connections that open and close at once
    for _ in range(50):
        socket.create_connection((host, port), timeout=5).close()
    # idle connections held open while the member serves others
    idle = [socket.create_connection((host, port), timeout=5) for _ in range(20)]
    try:
        idle[0].sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # a preface and then silence
        assert_serving(member, uniq)
    finally:
        for s in idle:
            s.close()
    assert_serving(member, uniq)
