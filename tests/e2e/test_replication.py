"""Three members: writes through every member, linearizable and serializable reads everywhere."""

import pytest

from cluster import ctl_ok, decode_kvs, wait_for


def test_writes_through_every_member_read_from_every_member(shared3, uniq):
    c = shared3
    for i, w in enumerate(c.members):
        k = f"{uniq}from-{w.name}"
        assert w.ctl_ok("put", k, f"v{i}").out == "OK\n"
        # linearizable reads (the default) see the write at once, on every member
        for r in c.members:
            assert r.ctl_ok("get", k).out == f"{k}\nv{i}\n", f"{r.name} missed a write made through {w.name}"
    # every member reports the same kvs with the same revisions
    views = [decode_kvs(m.ctl_ok("get", uniq, "--prefix", "-w", "json").json()) for m in c.members]
    assert len(views[0]) == len(c) and views[0] == views[1] == views[2]
    # overwrite through another member; the version and create revision carry over
    k = f"{uniq}from-{c[0].name}"
    c[2].ctl_ok("put", k, "again")
    for r in c.members:
        (kv,) = decode_kvs(r.ctl_ok("get", k, "-w", "json").json())
        assert (kv["value"], kv["version"], kv["create_revision"]) == ("again", 2, views[0][0]["create_revision"])


def test_serializable_reads(shared3, uniq):
    c = shared3
    k = uniq + "k"
    c[0].ctl_ok("put", k, "s1")
    for m in c.members:
        # a serializable read is served locally: it may lag, but catches up
        wait_for(lambda: m.ctl_ok("get", k, "--consistency=s").out == f"{k}\ns1\n", 10,
                 f"serializable read of {k} on {m.name}")
        r = m.ctl_ok("get", k, "--consistency=s", "-w", "json").json()
        assert int(r["header"]["member_id"]) == int(m.status()["header"]["member_id"])
    # python client: serializable range
    cl = c[1].client()
    try:
        value, meta = cl.get(k, serializable=True)
        assert value == b"s1"
    finally:
        cl.close()


def test_txn_and_delete_through_followers(shared3, uniq):
    c = shared3
    leader = c.leader()
    followers = [m for m in c.members if m is not leader]
    k = uniq + "k"
    followers[0].ctl_ok("put", k, "1")
    r = followers[1].ctl_ok("txn", input=f'value("{k}") = "1"\n\nput {k} 2\n\nput {k} bad\n\n')
    assert r.out == "SUCCESS\n\nOK\n"
    assert leader.ctl_ok("get", k).out == f"{k}\n2\n"
    assert followers[1].ctl_ok("del", k).out == "1\n"
    for m in c.members:
        assert m.ctl_ok("get", k).out == ""


def test_compaction_through_a_follower(shared3, uniq):
    c = shared3
    leader = c.leader()
    f = next(m for m in c.members if m is not leader)
    k = uniq + "k"
    f.ctl_ok("put", k, "a")
    old = int(f.ctl_ok("get", k, "-w", "json").json()["kvs"][0]["mod_revision"])
    f.ctl_ok("put", k, "b")
    now = int(f.ctl_ok("get", k, "-w", "json").json()["header"]["revision"])
    assert f.ctl_ok("compact", str(now)).out == f"compacted revision {now}\n"
    for m in c.members:
        wait_for(lambda: m.ctl("get", k, "--rev", str(old)).error_line()
                 == "etcdserver: mvcc: required revision has been compacted", 10,
                 f"compaction to reach {m.name}")
        assert m.ctl_ok("get", k, "--rev", str(now)).out == f"{k}\nb\n"


def test_members_agree_on_hashkv(shared3, uniq):
    c = shared3
    for i in range(10):
        c[i % 3].ctl_ok("put", f"{uniq}{i}", str(i))
    rev = int(c[0].ctl_ok("get", "-w", "json", uniq).json()["header"]["revision"])
    wait_for(lambda: {int(m.status()["header"]["revision"]) for m in c.members} == {rev}, 10,
             "every member to apply the last write")
    hs = ctl_ok(c.endpoints, "endpoint", "hashkv", "--rev", str(rev), "-w", "json").json()
    assert len(hs) == 3
    assert len({h["HashKV"]["hash"] for h in hs}) == 1, hs
    assert all(int(h["HashKV"]["header"]["revision"]) >= rev for h in hs)
