"""Disaster recovery: a cluster that lost its quorum for good is restarted
from one surviving member with --force-new-cluster, which becomes a
one-member cluster with all the data, and grows again with `member add`."""

from cluster import LoadWriter, decode_kvs, wait_for


def member_id(m) -> int:
    return int(m.status()["header"]["member_id"])


def test_force_new_cluster_keeps_data(make_cluster):
    c = make_cluster(3)
    load = LoadWriter(c.members, "fnc/").start()
    try:
        wait_for(lambda: load.acked_count() >= 100, 30, "writes")
    finally:
        acked = load.stop()
    survivor = c[0]
    sid = member_id(survivor)
    # The survivor must hold every acknowledged write (a quorum may have
    # acknowledged one it had not received yet: that one would be lost).
    # A few more writes carry the commit index of the earlier ones into
    # the survivor's log (etcd persists it with later entries).
    for i in range(3):
        survivor.ctl_ok("put", f"fence{i}", "x")
    want = max(int(m.status()["header"]["revision"]) for m in c.members)
    wait_for(lambda: int(survivor.status()["header"]["revision"]) >= want, 20,
             "the survivor to apply every acknowledged write")
    c.stop()  # all three gone: m1 and m2 never come back

    survivor.extra_flags["force-new-cluster"] = None
    survivor.start()
    survivor.wait_healthy(30)
    ms = survivor.ctl_ok("member", "list", "-w", "json").json()["members"]
    assert [int(m["ID"]) for m in ms] == [sid]
    assert int(survivor.status()["leader"]) == sid
    r = survivor.ctl_ok("get", "fnc/", "--prefix", "-w", "json").json()
    got = {kv["key"]: kv["value"] for kv in decode_kvs(r)}
    lost = {k for k, v in acked.items() if got.get(k) != v}
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {sorted(lost)[:5]}"
    survivor.ctl_ok("put", "after", "recovery")

    # Restarted without the flag, it stays the one-member cluster it became.
    survivor.kill()
    del survivor.extra_flags["force-new-cluster"]
    survivor.start()
    survivor.wait_healthy(30)
    assert survivor.ctl_ok("get", "after", "--print-value-only").out.strip() == "recovery"
    assert len(survivor.ctl_ok("member", "list", "-w", "json").json()["members"]) == 1
