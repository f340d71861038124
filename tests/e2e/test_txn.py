"""Transactions: `etcdctl txn` from stdin, and the python etcd3 transaction API."""

from cluster import decode_kvs


def txn(member, text: str, *opts: str):
    return member.ctl("txn", *opts, input=text)


def txn_ok(member, text: str, *opts: str):
    r = txn(member, text, *opts)
    assert r.ok, repr(r)
    return r


def rev_of(member) -> int:
    return int(member.ctl_ok("get", "-w", "json", "/no-such-key").json()["header"]["revision"])


def test_txn_value_version_branches(member, uniq):
    k = uniq + "k"
    member.ctl_ok("put", k, "v1")
    # success branch: put then get in one txn; the get sees the put
    r = txn_ok(member, f'value("{k}") = "v1"\nversion("{k}") = "1"\n\nput {k} v2\nget {k}\n\nput {k} v3\n\n')
    assert r.out == f"SUCCESS\n\nOK\n\n{k}\nv2\n"
    # the compare no longer holds: failure branch
    r = txn_ok(member, f'value("{k}") = "v1"\n\nput {k} v2\n\nput {uniq}f failed\nget {k}\n\n')
    assert r.out == f"FAILURE\n\nOK\n\n{k}\nv2\n"
    assert member.ctl_ok("get", uniq + "f").out == f"{uniq}f\nfailed\n"
    # != and > and <
    r = txn_ok(member, f'value("{k}") != "zzz"\nversion("{k}") > "1"\nversion("{k}") < "3"\n\ndel {k}\n\n\n')
    assert r.out == "SUCCESS\n\n1\n"
    # an empty failure branch that runs: just FAILURE
    r = txn_ok(member, f'version("{k}") > "0"\n\nput {k} never\n\n\n')
    assert r.out == "FAILURE\n"
    assert member.ctl_ok("get", k).out == ""


def test_txn_create_mod_revisions(member, uniq):
    k = uniq + "k"
    r0 = rev_of(member)
    # create("k") = "0": the key does not exist
    r = txn_ok(member, f'create("{k}") = "0"\n\nput {k} first\n\nget {k}\n\n', "-w", "json").json()
    assert r["succeeded"] is True and int(r["header"]["revision"]) == r0 + 1
    assert int(r["responses"][0]["Response"]["ResponsePut"]["header"]["revision"]) == r0 + 1
    # now create = r0+1, mod = r0+1
    r = txn_ok(member, f'create("{k}") = "{r0 + 1}"\nmod("{k}") = "{r0 + 1}"\n\nput {k} second\n\n\n', "-w", "json").json()
    assert r["succeeded"] is True and int(r["header"]["revision"]) == r0 + 2
    r = txn_ok(member, f'mod("{k}") < "{r0 + 2}"\n\nput {k} no\n\nget {k}\n\n', "-w", "json").json()
    assert r.get("succeeded", False) is False
    # a failed txn whose branch only reads creates no revision
    assert int(r["header"]["revision"]) == r0 + 2
    (kv,) = decode_kvs(r["responses"][0]["Response"]["ResponseRange"])
    assert (kv["value"], kv["create_revision"], kv["mod_revision"], kv["version"]) == ("second", r0 + 1, r0 + 2, 2)
    # several writes in one txn share one revision
    r = txn_ok(member, f'mod("{k}") = "{r0 + 2}"\n\nput {uniq}a 1\nput {uniq}b 2\ndel {k}\n\n\n', "-w", "json").json()
    assert r["succeeded"] is True and int(r["header"]["revision"]) == r0 + 3
    kvs = decode_kvs(member.ctl_ok("get", uniq, "--prefix", "-w", "json").json())
    assert [(kv["key"], kv["mod_revision"]) for kv in kvs] == [(uniq + "a", r0 + 3), (uniq + "b", r0 + 3)]


def test_txn_range_ops(member, uniq):
    for n in "abc":
        member.ctl_ok("put", uniq + n, n)
    # get with --prefix and del with --prefix inside a txn
    r = txn_ok(member, f'\nget {uniq} --prefix\ndel {uniq}b --prev-kv\n\n\n', "-w", "json").json()
    rr = r["responses"][0]["Response"]["ResponseRange"]
    assert [kv["key"] for kv in decode_kvs(rr)] == [uniq + "a", uniq + "b", uniq + "c"] and rr["count"] == 3
    dr = r["responses"][1]["Response"]["ResponseDeleteRange"]
    assert int(dr["deleted"]) == 1 and decode_kvs({"kvs": dr["prev_kvs"]})[0]["value"] == "b"


def test_txn_duplicate_key_error(member, uniq):
    k = uniq + "k"
    r = txn(member, f'\nput {k} 1\nput {k} 2\n\n\n')
    assert not r.ok and r.error_line() == "etcdserver: duplicate key given in txn request", repr(r)
    # a put and a delete covering it
    r = txn(member, f'\nput {k} 1\ndel {uniq} --prefix\n\n\n')
    assert not r.ok and r.error_line() == "etcdserver: duplicate key given in txn request", repr(r)
    # nothing was applied
    assert member.ctl_ok("get", uniq, "--prefix").out == ""
    # the same key in different branches is fine
    txn_ok(member, f'version("{k}") = "0"\n\nput {k} 1\n\nput {k} 2\n\n')
    assert member.ctl_ok("get", k).out == f"{k}\n1\n"


def test_txn_python_client(member, uniq):
    c = member.client()
    try:
        k = uniq + "k"
        c.put(k, "v1")
        ok, responses = c.transaction(
            compare=[c.transactions.value(k) == "v1", c.transactions.version(k) > 0],
            success=[c.transactions.put(k, "v2"), c.transactions.get(k)],
            failure=[c.transactions.put(k, "failed")],
        )
        assert ok is True
        (value, meta), = responses[1]
        assert value == b"v2" and meta.version == 2
        ok, responses = c.transaction(
            compare=[c.transactions.value(k) == "v1"],
            success=[c.transactions.put(k, "nope")],
            failure=[c.transactions.get(k), c.transactions.delete(uniq + "absent")],
        )
        assert ok is False
        (value, meta), = responses[0]
        assert value == b"v2"
        # create / mod compares
        value, meta = c.get(k)
        ok, _ = c.transaction(
            compare=[c.transactions.create(k) == meta.create_revision,
                     c.transactions.mod(k) == meta.mod_revision],
            success=[c.transactions.delete(k)], failure=[])
        assert ok is True
        assert c.get(k) == (None, None)
        ok, _ = c.transaction(compare=[c.transactions.create(k) == 0],
                              success=[c.transactions.put(k, "again")], failure=[])
        assert ok is True and c.get(k)[0] == b"again"
    finally:
        c.close()
