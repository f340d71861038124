"""Membership changes (etcd's Cluster service) and leader transfer, against
etcd and keel: errors byte for byte, and a cluster reshaped under a write
load (add a member that joins with --initial-cluster-state existing, add and
promote a learner, remove a member, move the leader) losing no acknowledged
write."""

import re

import grpc
import pytest
from etcd3 import etcdrpc

from cluster import LoadWriter, decode_kvs, wait_for


def member_id(m) -> int:
    return int(m.status()["header"]["member_id"])


def members_of(m) -> list[dict]:
    return m.ctl_ok("member", "list", "-w", "json").json()["members"]


def add_member(via, new, *extra: str, timeout: float = 30) -> int:
    """`member add` through `via` (retrying only etcd's refusal while the peers
    have not been connected for long enough), then points `new` at the
    ETCD_INITIAL_CLUSTER etcdctl printed. Returns the new member's id."""
    def attempt():
        r = via.ctl("member", "add", new.name, "--peer-urls=" + new.peer_url, *extra)
        if r.ok:
            return r
        assert r.error_line() == "etcdserver: unhealthy cluster", repr(r)
        return None
    r = wait_for(attempt, timeout, f"member add {new.name}", interval=0.2)
    m = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', r.out)
    assert m, r.out
    new.initial_cluster = m.group(1)
    mid = re.search(r"Member\s+([0-9a-f]+) added", r.out)
    assert mid, r.out
    return int(mid.group(1), 16)


def get_all(m, prefix: str) -> dict[str, str]:
    r = m.ctl_ok("get", prefix, "--prefix", "-w", "json", timeout=60, command_timeout="20s").json()
    return {kv["key"]: kv["value"] for kv in decode_kvs(r)}


def test_member_errors_single(make_cluster):
    c = make_cluster(1)
    m0 = c[0]
    me = member_id(m0)
    r = m0.ctl("member", "add", "dup", "--peer-urls=" + m0.peer_url)
    assert r.error_line() == "etcdserver: Peer URLs already exists", repr(r)
    r = m0.ctl("member", "remove", "abcdef")
    assert r.error_line() == "etcdserver: member not found", repr(r)
    r = m0.ctl("member", "update", "abcdef", "--peer-urls=http://127.0.0.1:1")
    assert r.error_line() == "etcdserver: member not found", repr(r)
    r = m0.ctl("member", "promote", f"{me:x}")
    assert r.error_line() == "etcdserver: can only promote a learner member", repr(r)
    r = m0.ctl("member", "promote", "abcdef")
    assert r.error_line() == "etcdserver: member not found", repr(r)
    r = m0.ctl("member", "add", "bad", "--peer-urls=notaurl")
    assert not r.ok, repr(r)

    # A learner that never started is not in sync; a second learner is one
    # too many.
    r = m0.ctl_ok("member", "add", "l1", "--learner", "--peer-urls=http://127.0.0.1:1")
    lid = int(re.search(r"Member\s+([0-9a-f]+) added", r.out).group(1), 16)
    ms = {int(x["ID"]): x for x in members_of(m0)}
    assert ms[lid].get("isLearner") is True and ms[lid].get("name", "") == ""
    r = m0.ctl("member", "promote", f"{lid:x}")
    assert r.error_line() == ("etcdserver: can only promote a learner member which is in "
                              "sync with leader"), repr(r)
    r = m0.ctl("member", "add", "l2", "--learner", "--peer-urls=http://127.0.0.1:2")
    assert r.error_line() == "etcdserver: too many learner members in cluster", repr(r)
    # A learner counts for no quorum: removing it is always allowed.
    m0.ctl_ok("member", "remove", f"{lid:x}")
    assert lid not in {int(x["ID"]) for x in members_of(m0)}
    # Moving the leadership to a stranger.
    r = m0.ctl("move-leader", "abcdef")
    assert r.error_line() == "etcdserver: bad leader transferee", repr(r)
    # A member added but never started: one started member of two voters
    # is no quorum for a third.
    m0.ctl_ok("member", "add", "v1", "--peer-urls=http://127.0.0.1:3")
    r = m0.ctl("member", "add", "v2", "--peer-urls=http://127.0.0.1:4")
    assert r.error_line() == ("etcdserver: re-configuration failed due to not enough "
                              "started members"), repr(r)


def test_reshape_under_load(make_cluster):
    """3 members under load: add m3 (joins existing), add learner m4 and
    promote it, remove m3, move the leader. No acknowledged write is lost."""
    c = make_cluster(3)
    load = LoadWriter(c.members[:3], "load/").start()
    try:
        wait_for(lambda: load.acked_count() >= 50, 30, "first writes")

        m3 = c.new_member("m3")
        id3 = add_member(c[0], m3)
        m3.start()
        m3.wait_healthy(30)
        wait_for(lambda: {member_id(m3)} == {id3}, 10, "m3 to serve as the added member")
        wait_for(lambda: any(x.get("name") == "m3" for x in members_of(c[1])), 20,
                 "m3 to publish its name")

        m4 = c.new_member("m4")
        id4 = add_member(c[1], m4, "--learner")
        m4.start()
        # A learner refuses linearizable requests.
        def learner_refuses():
            r = m4.ctl("get", "x")
            return r.error_line() == "etcdserver: rpc not supported for learner"
        wait_for(learner_refuses, 30, "the learner to run and refuse linearizable reads")

        def promote():
            r = c[2].ctl("member", "promote", f"{id4:x}")
            if r.ok:
                return True
            assert r.error_line() == ("etcdserver: can only promote a learner member which "
                                      "is in sync with leader"), repr(r)
            return False
        wait_for(promote, 30, "the learner to catch up and be promoted", interval=0.2)
        # c[2] (or the leader it forwarded to) applied the promotion before
        # answering; c[0] lists members from its own state, which may lag.
        wait_for(lambda: not any(x.get("isLearner") for x in members_of(c[0])), 10,
                 "the promotion to reach m0")
        m4.wait_healthy(30)

        n = load.acked_count()
        wait_for(lambda: load.acked_count() >= n + 50, 30, "writes after the promotion")

        # Remove m3: it stops by itself, as etcd's removed members do.
        c[0].ctl_ok("member", "remove", f"{id3:x}")
        m3.wait_exit(30)
        assert id3 not in {int(x["ID"]) for x in members_of(c[0])}

        # Move the leader to m4, through the leader; a follower refuses.
        leader = c.leader()
        lid = member_id(leader)
        follower = next(m for m in c.members[:3] if m is not leader)
        with follower.client() as cl:
            with pytest.raises(grpc.RpcError) as ei:
                cl.maintenancestub.MoveLeader(etcdrpc.MoveLeaderRequest(targetID=id4), timeout=5)
            assert ei.value.details() == "etcdserver: not leader"
        target = id4 if lid != id4 else member_id(follower)
        n = load.acked_count()
        leader.ctl_ok("move-leader", f"{target:x}", "--endpoints=" + ",".join(
            m.endpoint for m in c.members if m.running()))
        wait_for(lambda: c.leader_ids() == {target}, 20, "every member to follow the new leader")
        wait_for(lambda: load.acked_count() >= n + 50, 30, "writes after the leader moved")
    finally:
        acked = load.stop()
    assert len(acked) >= 200, f"only {len(acked)} writes acknowledged; errors: {load.errors[-5:]}"
    got = get_all(c.leader(), "load/")
    lost = {k: v for k, v in acked.items() if got.get(k) != v}
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {sorted(lost)[:5]}"
    # The promoted member has all of it too.
    wait_for(lambda: get_all(c.members[4], "load/").items() >= acked.items(), 30,
             "m4 to hold every acknowledged write")
