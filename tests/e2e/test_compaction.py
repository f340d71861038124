"""Compaction: `etcdctl compact`, reads below/at/above the compacted revision."""

import pytest

from cluster import decode_kvs

COMPACTED = "etcdserver: mvcc: required revision has been compacted"
FUTURE = "etcdserver: mvcc: required revision is a future revision"


def rev_of(member) -> int:
    return int(member.ctl_ok("get", "-w", "json", "/no-such-key").json()["header"]["revision"])


@pytest.mark.parametrize("physical", [False, True], ids=["logical", "physical"])
def test_compact_then_read(member, uniq, physical):
    k = uniq + "k"
    member.ctl_ok("put", k, "a")
    r1 = rev_of(member)
    member.ctl_ok("put", k, "b")
    member.ctl_ok("put", uniq + "gone", "x")
    member.ctl_ok("del", uniq + "gone")
    member.ctl_ok("put", k, "c")
    r2 = r1 + 1
    now = rev_of(member)
    assert now == r1 + 4

    opts = ["--physical"] if physical else []
    r = member.ctl_ok("compact", str(r2), *opts)
    assert r.out == f"compacted revision {r2}\n"

    for rev in (1, r1, r2 - 1):
        r = member.ctl("get", k, "--rev", str(rev))
        assert not r.ok and r.error_line() == COMPACTED, repr(r)
    # the compacted revision itself is still readable, and everything after it
    assert member.ctl_ok("get", k, "--rev", str(r2)).out == f"{k}\nb\n"
    assert member.ctl_ok("get", uniq, "--prefix", "--rev", str(r2 + 1)).out == f"{uniq}gone\nx\n{k}\nb\n"
    assert member.ctl_ok("get", uniq, "--prefix", "--rev", str(r2 + 2)).out == f"{k}\nb\n"
    assert member.ctl_ok("get", k, "--rev", str(now)).out == f"{k}\nc\n"
    # versions and create revisions survive compaction
    (kv,) = decode_kvs(member.ctl_ok("get", k, "-w", "json").json())
    assert (kv["create_revision"], kv["mod_revision"], kv["version"]) == (r1, now, 3)

    for rev in (now + 1, now + 1000):
        r = member.ctl("get", k, "--rev", str(rev))
        assert not r.ok and r.error_line() == FUTURE, repr(r)

    # compacting again at or below the compacted revision; compacting the future
    r = member.ctl("compact", str(r2))
    assert not r.ok and r.error_line() == COMPACTED, repr(r)
    r = member.ctl("compact", str(r1))
    assert not r.ok and r.error_line() == COMPACTED, repr(r)
    r = member.ctl("compact", str(now + 5))
    assert not r.ok and r.error_line() == FUTURE, repr(r)
    # compacting at the current revision works and keeps the current values
    assert member.ctl_ok("compact", str(now)).out == f"compacted revision {now}\n"
    assert member.ctl_ok("get", uniq, "--prefix").out == f"{k}\nc\n"
    # writes go on after a compaction
    member.ctl_ok("put", k, "d")
    assert rev_of(member) == now + 1
    assert member.ctl_ok("get", k, "--rev", str(now)).out == f"{k}\nc\n"


def test_compacted_read_via_python(member, uniq):
    from etcd3 import etcdrpc
    import grpc
    k = uniq + "k"
    member.ctl_ok("put", k, "a")
    member.ctl_ok("put", k, "b")
    now = rev_of(member)
    member.ctl_ok("compact", str(now))
    c = member.client()
    try:
        with pytest.raises(grpc.RpcError) as ei:
            c.kvstub.Range(etcdrpc.RangeRequest(key=k.encode(), revision=now - 1), timeout=5)
        assert ei.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert ei.value.details() == COMPACTED
        with pytest.raises(grpc.RpcError) as ei:
            c.kvstub.Range(etcdrpc.RangeRequest(key=k.encode(), revision=now + 10), timeout=5)
        assert ei.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert ei.value.details() == FUTURE
        resp = c.kvstub.Range(etcdrpc.RangeRequest(key=k.encode(), revision=now), timeout=5)
        assert [kv.value for kv in resp.kvs] == [b"b"]
        # a txn whose range reads a compacted revision fails as a whole
        req = etcdrpc.TxnRequest(success=[etcdrpc.RequestOp(
            request_range=etcdrpc.RangeRequest(key=k.encode(), revision=now - 1))])
        with pytest.raises(grpc.RpcError) as ei:
            c.kvstub.Txn(req, timeout=5)
        assert ei.value.details() == COMPACTED
    finally:
        c.close()
