"""Key-value basics through etcdctl: put/get/del and every get option."""

import pytest

from cluster import ctl_ok, decode_kvs, simple_pairs


def revision(member) -> int:
    return int(member.ctl_ok("get", "-w", "json", "/no-such-key").json()["header"]["revision"])


def test_put_get_delete(member, uniq):
    k = uniq + "k"
    assert member.ctl_ok("put", k, "v1").out == "OK\n"
    assert member.ctl_ok("get", k).out == f"{k}\nv1\n"
    assert member.ctl_ok("get", k, "--print-value-only").out == "v1\n"
    assert member.ctl_ok("put", k, "v2").out == "OK\n"
    assert member.ctl_ok("get", k).out == f"{k}\nv2\n"
    assert member.ctl_ok("del", k).out == "1\n"
    assert member.ctl_ok("get", k).out == ""
    assert member.ctl_ok("del", k).out == "0\n"
    # A value with spaces and an empty value.
    member.ctl_ok("put", k, "a b  c")
    assert member.ctl_ok("get", k).out == f"{k}\na b  c\n"
    member.ctl_ok("put", "--", k, "")
    assert member.ctl_ok("get", k, "-w", "json").json()["kvs"][0].get("value", "") == ""


def test_prefix_and_ranges(member, uniq):
    p = uniq + "p/"
    for name, v in [("a", "1"), ("b", "2"), ("c", "3"), ("c/d", "4")]:
        member.ctl_ok("put", p + name, v)
    member.ctl_ok("put", uniq + "p0", "outside")  # '0' sorts right after '/'
    member.ctl_ok("put", uniq + "p", "outside")

    got = simple_pairs(member.ctl_ok("get", p, "--prefix").out)
    assert got == [(p + "a", "1"), (p + "b", "2"), (p + "c", "3"), (p + "c/d", "4")]
    # [key, range_end)
    got = simple_pairs(member.ctl_ok("get", p + "a", p + "c").out)
    assert got == [(p + "a", "1"), (p + "b", "2")]
    # range_end equal to key: empty
    assert member.ctl_ok("get", p + "b", p + "b").out == ""

    assert member.ctl_ok("del", p + "c", "--prefix").out == "2\n"
    assert member.ctl_ok("del", p, "--prefix").out == "2\n"
    assert member.ctl_ok("get", p, "--prefix").out == ""
    assert member.ctl_ok("del", p, "--prefix").out == "0\n"
    assert member.ctl_ok("get", uniq + "p").out == f"{uniq}p\noutside\n"
    assert member.ctl_ok("get", uniq + "p0").out == f"{uniq}p0\noutside\n"
    # del [key, range_end)
    for name in "abc":
        member.ctl_ok("put", p + name, name)
    assert member.ctl_ok("del", p + "a", p + "c").out == "2\n"
    assert simple_pairs(member.ctl_ok("get", p, "--prefix").out) == [(p + "c", "c")]


def test_from_key(member):
    # '~' (0x7e) sorts after every other key this suite writes: --from-key reaches the end.
    base = "~fromkey/"
    for name in "abc":
        member.ctl_ok("put", base + name, name.upper())
    got = simple_pairs(member.ctl_ok("get", base + "b", "--from-key").out)
    assert got == [(base + "b", "B"), (base + "c", "C")]
    assert member.ctl_ok("get", base + "b", "--from-key", "--keys-only").out == f"{base}b\n\n{base}c\n\n"
    # del --from-key
    assert member.ctl_ok("del", base + "b", "--from-key").out == "2\n"
    assert simple_pairs(member.ctl_ok("get", base, "--prefix").out) == [(base + "a", "A")]
    # "\0" --from-key is the whole keyspace: it sees keys of other tests too.
    allk = member.ctl_ok("get", "--from-key", "", "--keys-only").out.split()
    assert base + "a" in allk and allk == sorted(allk)


def test_keys_only_limit_count(member, uniq):
    p = uniq
    for name in "abcde":
        member.ctl_ok("put", p + name, "value-" + name)
    assert member.ctl_ok("get", p, "--prefix", "--keys-only").out == "".join(f"{p}{n}\n\n" for n in "abcde")

    r = member.ctl_ok("get", p, "--prefix", "--limit", "2", "-w", "json").json()
    assert [kv["key"] for kv in decode_kvs(r)] == [p + "a", p + "b"]
    assert r["more"] is True
    assert r["count"] == 5
    r = member.ctl_ok("get", p, "--prefix", "--limit", "5", "-w", "json").json()
    assert r.get("more", False) is False and r["count"] == 5 and len(r["kvs"]) == 5
    r = member.ctl_ok("get", p, "--prefix", "--keys-only", "-w", "json").json()
    assert all("value" not in kv for kv in r["kvs"]) and len(r["kvs"]) == 5

    # etcdctl 3.4 has no --count-only: use the RPC.
    from etcd3 import etcdrpc
    c = member.client()
    try:
        resp = c.kvstub.Range(etcdrpc.RangeRequest(key=p.encode(), range_end=(p[:-1] + chr(ord(p[-1]) + 1)).encode(),
                                                   count_only=True), timeout=5)
        assert resp.count == 5 and len(resp.kvs) == 0
        resp = c.kvstub.Range(etcdrpc.RangeRequest(key=(p + "b").encode(), range_end=(p + "d").encode(),
                                                   count_only=True), timeout=5)
        assert resp.count == 2 and len(resp.kvs) == 0
    finally:
        c.close()


def test_sort(member, uniq):
    p = uniq
    # create order c, a, b; then modify a; values chosen against key order.
    member.ctl_ok("put", p + "c", "1")
    member.ctl_ok("put", p + "a", "3")
    member.ctl_ok("put", p + "b", "2")
    member.ctl_ok("put", p + "a", "4")
    member.ctl_ok("put", p + "a", "5")

    def keys(*opts):
        return [k for k, _ in simple_pairs(member.ctl_ok("get", p, "--prefix", *opts).out)]

    A, B, C = p + "a", p + "b", p + "c"
    assert keys() == [A, B, C]
    assert keys("--sort-by=KEY", "--order=DESCEND") == [C, B, A]
    assert keys("--order=DESCEND") == [C, B, A]
    assert keys("--sort-by=CREATE") == [C, A, B]
    assert keys("--sort-by=CREATE", "--order=DESCEND") == [B, A, C]
    assert keys("--sort-by=MODIFY") == [C, B, A]
    assert keys("--sort-by=MODIFY", "--order=DESCEND") == [A, B, C]
    assert keys("--sort-by=VALUE") == [C, B, A]
    assert keys("--sort-by=VALUE", "--order=DESCEND") == [A, B, C]
    assert keys("--sort-by=VERSION", "--order=DESCEND")[0] == A
    # sort with a limit: the limit applies after sorting
    assert keys("--sort-by=MODIFY", "--order=DESCEND", "--limit=1") == [A]
    assert keys("--sort-by=CREATE", "--limit=2") == [C, A]


def test_revisions_exact(member, uniq):
    k1, k2 = uniq + "k1", uniq + "k2"
    r0 = revision(member)
    member.ctl_ok("put", k1, "a")   # r0+1
    member.ctl_ok("put", k2, "b")   # r0+2
    member.ctl_ok("put", k1, "c")   # r0+3
    member.ctl_ok("del", k2)        # r0+4
    member.ctl_ok("put", k2, "d")   # r0+5
    member.ctl_ok("del", uniq + "absent")  # deletes nothing: no new revision

    r = member.ctl_ok("get", uniq, "--prefix", "-w", "json").json()
    h = r["header"]
    assert int(h["revision"]) == r0 + 5
    kvs = decode_kvs(r)
    assert [(kv["key"], kv["value"], kv["create_revision"], kv["mod_revision"], kv["version"]) for kv in kvs] == [
        (k1, "c", r0 + 1, r0 + 3, 2),
        (k2, "d", r0 + 5, r0 + 5, 1),
    ]
    assert r["count"] == 2

    # The header is sane: ids match member list / endpoint status.
    status = member.status()
    ml = member.ctl_ok("member", "list", "-w", "json").json()
    assert int(h["cluster_id"]) != 0 and int(h["cluster_id"]) == int(ml["header"]["cluster_id"])
    assert int(h["member_id"]) == int(status["header"]["member_id"])
    assert int(h["member_id"]) in [int(m["ID"]) for m in ml["members"]]
    assert int(h["raft_term"]) >= 1 and int(h["raft_term"]) == int(status["raftTerm"])

    def at(rev, key=None):
        args = ["get", key or uniq, "--rev", str(rev), "-w", "json"]
        if key is None:
            args.insert(2, "--prefix")
        resp = member.ctl_ok(*args).json()
        # A historical read still reports the current revision in its header.
        assert int(resp["header"]["revision"]) == r0 + 5
        return [(kv["key"], kv["value"], kv["version"]) for kv in decode_kvs(resp)]

    assert at(r0) == []
    assert at(r0 + 1) == [(k1, "a", 1)]
    assert at(r0 + 2) == [(k1, "a", 1), (k2, "b", 1)]
    assert at(r0 + 3) == [(k1, "c", 2), (k2, "b", 1)]
    assert at(r0 + 4) == [(k1, "c", 2)]
    assert at(r0 + 5) == [(k1, "c", 2), (k2, "d", 1)]
    assert at(r0 + 2, k1) == [(k1, "a", 1)]
    # --rev in simple format
    assert member.ctl_ok("get", k2, "--rev", str(r0 + 2)).out == f"{k2}\nb\n"

    # Each write's response header carries its own revision.
    w = member.ctl_ok("put", k1, "e", "-w", "json").json()
    assert int(w["header"]["revision"]) == r0 + 6
    d = member.ctl_ok("del", uniq, "--prefix", "-w", "json").json()
    assert int(d["header"]["revision"]) == r0 + 7 and int(d["deleted"]) == 2
    assert revision(member) == r0 + 7


def test_prev_kv(member, uniq):
    k = uniq + "k"
    # No previous value: just OK.
    assert member.ctl_ok("put", k, "v1", "--prev-kv").out == "OK\n"
    assert member.ctl_ok("put", k, "v2", "--prev-kv").out == f"OK\n{k}\nv1\n"
    r = member.ctl_ok("put", k, "v3", "--prev-kv", "-w", "json").json()
    prev = r["prev_kv"]
    assert (prev["version"], prev["create_revision"]) == (2, prev["create_revision"])
    assert decode_kvs({"kvs": [prev]})[0]["value"] == "v2"
    member.ctl_ok("put", uniq + "k2", "w")
    assert member.ctl_ok("del", uniq, "--prefix", "--prev-kv").out == f"2\n{k}\nv3\n{uniq}k2\nw\n"


def test_put_ignore_value(member, uniq):
    k = uniq + "k"
    r = member.ctl("put", k, "--ignore-value")
    assert not r.ok and r.error_line() == "etcdserver: key not found", repr(r)

    member.ctl_ok("put", k, "orig")
    assert member.ctl_ok("put", k, "--ignore-value").out == "OK\n"
    kv = decode_kvs(member.ctl_ok("get", k, "-w", "json").json())[0]
    assert kv["value"] == "orig" and kv["version"] == 2 and kv["mod_revision"] > kv["create_revision"]
    # --ignore-lease on a key that does not exist
    r = member.ctl("put", uniq + "absent", "v", "--ignore-lease")
    assert not r.ok and r.error_line() == "etcdserver: key not found", repr(r)
    # --ignore-lease on a key without a lease: the value changes, still no lease
    member.ctl_ok("put", k, "new", "--ignore-lease")
    kv = member.ctl_ok("get", k, "-w", "json").json()["kvs"][0]
    assert "lease" not in kv and decode_kvs({"kvs": [kv]})[0]["value"] == "new"


def test_put_ignore_lease(member, uniq):
    lease_out = member.ctl_ok("lease", "grant", "300").out
    # "lease 694d77aa9e38260f granted with TTL(300s)"
    lease_id = int(lease_out.split()[1], 16)
    kl = uniq + "leased"
    member.ctl_ok("put", kl, "v1", f"--lease={lease_id:x}")
    assert int(member.ctl_ok("get", kl, "-w", "json").json()["kvs"][0]["lease"]) == lease_id
    member.ctl_ok("put", kl, "v2", "--ignore-lease")
    kv = member.ctl_ok("get", kl, "-w", "json").json()["kvs"][0]
    assert int(kv["lease"]) == lease_id and decode_kvs({"kvs": [kv]})[0]["value"] == "v2"
    member.ctl_ok("put", kl, "--ignore-lease", "--ignore-value")
    kv = member.ctl_ok("get", kl, "-w", "json").json()["kvs"][0]
    assert int(kv["lease"]) == lease_id and kv["version"] == 3
    # a plain put detaches the key from its lease
    member.ctl_ok("put", kl, "v3")
    assert "lease" not in member.ctl_ok("get", kl, "-w", "json").json()["kvs"][0]
    member.ctl_ok("lease", "revoke", f"{lease_id:x}")


def test_get_json_fields(member, uniq):
    k = uniq + "k"
    member.ctl_ok("put", k, "hello")
    r = member.ctl_ok("get", k, "-w", "json").json()
    assert set(r["header"]) >= {"cluster_id", "member_id", "revision", "raft_term"}
    (kv,) = r["kvs"]
    assert set(kv) >= {"key", "create_revision", "mod_revision", "version", "value"}
    assert decode_kvs(r)[0]["value"] == "hello"
    # -w fields prints the same header
    f = member.ctl_ok("get", k, "-w", "fields").out
    assert f'"ClusterID" : {r["header"]["cluster_id"]}' in f
    assert f'"MemberID" : {r["header"]["member_id"]}' in f
    assert '"Key" : "' + k + '"' in f
    assert '"Value" : "hello"' in f
    # a miss: a header and nothing else
    miss = member.ctl_ok("get", uniq + "absent", "-w", "json").json()
    assert "kvs" not in miss and miss.get("count", 0) == 0
    assert int(miss["header"]["revision"]) == int(r["header"]["revision"])
