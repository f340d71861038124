"""Errors with etcd's exact messages: limits, quota and alarms, empty keys."""

import grpc
import pytest

from cluster import wait_for

TOO_LARGE = "etcdserver: request is too large"
TOO_MANY_OPS = "etcdserver: too many operations in txn request"
NO_SPACE = "etcdserver: mvcc: database space exceeded"
NO_KEY = "etcdserver: key is not provided"
DUPLICATE = "etcdserver: duplicate key given in txn request"

MAX_REQUEST_BYTES = 20000
MAX_TXN_OPS = 3
QUOTA = 256 * 1024


@pytest.fixture(scope="session")
def limited(_shared_factory):
    c = _shared_factory(1, name="limited", extra_flags={
        "max-request-bytes": MAX_REQUEST_BYTES, "max-txn-ops": MAX_TXN_OPS})
    return c[0]


def test_request_too_large(limited, uniq):
    k = uniq + "k"
    r = limited.ctl("put", k, "x" * (MAX_REQUEST_BYTES + 1000))
    assert not r.ok and r.error_line() == TOO_LARGE, repr(r)
    assert limited.ctl_ok("get", k).out == ""
    # just under the limit is fine
    limited.ctl_ok("put", k, "y" * (MAX_REQUEST_BYTES - 1000))
    assert limited.ctl_ok("get", k, "--print-value-only").out == "y" * (MAX_REQUEST_BYTES - 1000) + "\n"
    # through the python client: gRPC status and message
    c = limited.client()
    try:
        with pytest.raises(grpc.RpcError) as ei:
            c.put(k, b"z" * (MAX_REQUEST_BYTES * 2))
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ei.value.details() == TOO_LARGE
    finally:
        c.close()
    # a txn made large by many small parts is too large as a whole
    ops = "".join(f"put {uniq}t{i} {'v' * 9000}\n" for i in range(MAX_TXN_OPS))
    r = limited.ctl("txn", input=f"\n{ops}\n\n")
    assert not r.ok and r.error_line() == TOO_LARGE, repr(r)


def test_too_many_txn_ops(limited, uniq):
    ops = "".join(f"put {uniq}{i} v\n" for i in range(MAX_TXN_OPS + 1))
    r = limited.ctl("txn", input=f"\n{ops}\n\n")
    assert not r.ok and r.error_line() == TOO_MANY_OPS, repr(r)
    # the limit applies to each branch: MAX_TXN_OPS on each side is fine
    ops = "".join(f"put {uniq}{i} v\n" for i in range(MAX_TXN_OPS))
    fops = "".join(f"put {uniq}f{i} v\n" for i in range(MAX_TXN_OPS))
    r = limited.ctl_ok("txn", input=f'version("{uniq}0") = "0"\n\n{ops}\n{fops}\n')
    assert r.out.startswith("SUCCESS")
    # too many ops in the failure branch
    fops = "".join(f"put {uniq}f{i} v\n" for i in range(MAX_TXN_OPS + 1))
    r = limited.ctl("txn", input=f'\n\n{fops}\n')
    assert not r.ok and r.error_line() == TOO_MANY_OPS, repr(r)
    # too many compares
    cmps = "".join(f'version("{uniq}c{i}") = "0"\n' for i in range(MAX_TXN_OPS + 1))
    r = limited.ctl("txn", input=f'{cmps}\nput {uniq}x v\n\n\n')
    assert not r.ok and r.error_line() == TOO_MANY_OPS, repr(r)


def test_duplicate_key_in_txn(limited, uniq):
    r = limited.ctl("txn", input=f"\nput {uniq}k 1\nput {uniq}k 2\n\n\n")
    assert not r.ok and r.error_line() == DUPLICATE, repr(r)


def test_empty_key(member):
    for args in (("get", ""), ("del", ""), ("put", "", "v")):
        r = member.ctl(*args)
        assert not r.ok and r.error_line() == NO_KEY, repr(r)
    c = member.client()
    try:
        for call in (lambda: c.put("", "v"), lambda: c.get(""), lambda: c.delete("")):
            with pytest.raises(grpc.RpcError) as ei:
                call()
            assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert ei.value.details() == NO_KEY
        # inside a txn too
        with pytest.raises(grpc.RpcError) as ei:
            c.transaction(compare=[], success=[c.transactions.put("", "v")], failure=[])
        assert ei.value.details() == NO_KEY
    finally:
        c.close()


def fill_until_nospace(m, limit: int = 400) -> int:
    """Writes 15 KB values over 5 keys until the quota error; returns the number of puts that worked."""
    c = m.client()
    try:
        for i in range(limit):
            try:
                c.put(f"/fill/{i % 5}", b"x" * 15000)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
                assert e.details() == NO_SPACE
                return i
        raise AssertionError(f"{limit} puts of 15 KB never exceeded a {QUOTA}-byte quota")
    finally:
        c.close()


@pytest.fixture
def quota_member(make_cluster):
    return make_cluster(1, extra_flags={"quota-backend-bytes": QUOTA})[0]


def test_quota_exceeded_raises_nospace(quota_member):
    m = quota_member
    n = fill_until_nospace(m)
    assert n > 0
    r = m.ctl("put", "/other", "v")
    assert not r.ok and r.error_line() == NO_SPACE, repr(r)
    mid = int(m.status()["header"]["member_id"])
    assert m.ctl_ok("alarm", "list").out == f"memberID:{mid} alarm:NOSPACE \n"
    st = m.status()
    assert st.get("errors") == [f"memberID:{mid} alarm:NOSPACE "]
    # reads and deletes still work; a txn that only reads too
    assert m.ctl_ok("get", "/fill/", "--prefix", "--keys-only").out
    assert m.ctl_ok("del", "/fill/0").out == "1\n"
    r = m.ctl_ok("txn", input="\nget /fill/1\n\n\n")
    assert r.out.startswith("SUCCESS")
    # a txn that writes is refused
    r = m.ctl("txn", input="\nput /fill/1 x\n\n\n")
    assert not r.ok and r.error_line() == NO_SPACE, repr(r)


def test_quota_exceeded_refuses_lease_grant(quota_member):
    m = quota_member
    fill_until_nospace(m)
    r = m.ctl("lease", "grant", "60")
    assert not r.ok and r.error_line() == f"failed to grant lease ({NO_SPACE})", repr(r)


def test_quota_recover_compact_defrag_disarm(quota_member):
    m = quota_member
    fill_until_nospace(m)
    rev = int(m.ctl_ok("get", "-w", "json", "/x").json()["header"]["revision"])
    m.ctl_ok("compact", str(rev), "--physical")
    r = m.ctl_ok("defrag")
    assert r.out == f"Finished defragmenting etcd member[{m.endpoint}]\n"
    # still alarmed until disarmed
    r = m.ctl("put", "/other", "v")
    assert not r.ok and r.error_line() == NO_SPACE, repr(r)
    mid = int(m.status()["header"]["member_id"])
    assert m.ctl_ok("alarm", "disarm").out == f"memberID:{mid} alarm:NOSPACE \n"
    assert m.ctl_ok("alarm", "list").out == ""
    assert m.ctl_ok("put", "/other", "v").out == "OK\n"
    assert "errors" not in m.status()
    assert int(m.status()["dbSize"]) < QUOTA
