"""etcd's JSON gateway on the client URL (etcd 3.4's grpc-gateway): paths, jsonpb
encoding (proto names, int64 as strings, bytes in base64, defaults left out), errors
and their HTTP statuses, streams; and HTTP/1.1 beside gRPC on the same port."""

from __future__ import annotations

import base64
import json
import socket

import pytest

from cluster import b64, wait_for
from httpc import Stream, post, post_ok, raw, request

HEADER_KEYS = {"cluster_id", "member_id", "revision", "raft_term"}


def implemented(target: str, status: int) -> None:
    """Services other engineers are still landing answer UNIMPLEMENTED (HTTP 501) on
    keel until then: an expected failure, never on etcd, and gone once they land."""
    if target == "keel" and status == 501:
        pytest.xfail("the gRPC service is not implemented on keel yet")


def check_header(h: dict, revision: bool = True) -> int:
    assert set(h) == (HEADER_KEYS if revision else HEADER_KEYS - {"revision"}), h
    for k, v in h.items():
        assert isinstance(v, str) and int(v) > 0, (k, h)  # 64-bit integers as strings
    return int(h.get("revision", 0))


def test_kv_put_range_txn_delete(member, uniq):
    k, k2 = b64(uniq + "a"), b64(uniq + "b")
    put = post_ok(member, "/v3/kv/put", {"key": k, "value": b64("v1")})
    assert set(put) == {"header"}
    rev = check_header(put["header"])

    got = post_ok(member, "/v3/kv/range", {"key": k})
    assert got["kvs"] == [{"key": k, "create_revision": str(rev), "mod_revision": str(rev),
                           "version": "1", "value": b64("v1")}]
    assert got["count"] == "1"
    assert set(got) == {"header", "kvs", "count"}  # more: false is left out

    # prev_kv, and a range with a limit (more: true)
    put2 = post_ok(member, "/v3/kv/put", {"key": k, "value": b64("v2"), "prev_kv": True})
    assert put2["prev_kv"]["value"] == b64("v1")
    post_ok(member, "/v3/kv/put", {"key": k2, "value": ""})
    end = b64(uniq[:-1] + chr(ord(uniq[-1]) + 1))
    got = post_ok(member, "/v3/kv/range", {"key": b64(uniq), "range_end": end, "limit": 1})
    assert got["more"] is True and got["count"] == "2" and len(got["kvs"]) == 1
    # An empty value is a default: left out; keys_only leaves values out too.
    got = post_ok(member, "/v3/kv/range", {"key": k2})
    assert "value" not in got["kvs"][0]

    # txn: compare on value, success branch with a range
    txn = post_ok(member, "/v3/kv/txn", {
        "compare": [{"key": k, "target": "VALUE", "result": "EQUAL", "value": b64("v2")}],
        "success": [{"request_put": {"key": k, "value": b64("v3")}},
                    {"request_range": {"key": k}}],
    })
    assert txn["succeeded"] is True
    assert set(txn["responses"][0]) == {"response_put"}
    assert txn["responses"][1]["response_range"]["kvs"][0]["value"] == b64("v3")
    # failed comparison: succeeded (false) left out
    txn = post_ok(member, "/v3/kv/txn", {
        "compare": [{"key": k, "target": "VERSION", "result": "GREATER", "version": 100}],
        "failure": [{"request_delete_range": {"key": k2}}],
    })
    assert "succeeded" not in txn
    assert txn["responses"][0]["response_delete_range"]["deleted"] == "1"

    d = post_ok(member, "/v3/kv/deleterange", {"key": k, "prev_kv": True})
    assert d["deleted"] == "1" and d["prev_kvs"][0]["value"] == b64("v3")
    assert post_ok(member, "/v3/kv/range", {"key": k}) .keys() == {"header"}


def test_kv_v3beta_alias_and_unknown_prefixes(member, uniq):
    k = b64(uniq)
    post_ok(member, "/v3beta/kv/put", {"key": k, "value": b64("x")})
    assert post_ok(member, "/v3/kv/range", {"key": k})["count"] == "1"
    r = post(member, "/v3alpha/kv/range", {"key": k})
    assert (r.status, r.text) == (404, "404 page not found\n")
    # below /v3/: grpc-gateway's own 404; elsewhere Go's ServeMux's
    r = post(member, "/v3/kv/nope", {})
    assert (r.status, r.text) == (404, "Not Found\n")
    r = post(member, "/v3/maintenance/hashkv", {})  # not in etcd 3.4's gateway
    assert (r.status, r.text) == (404, "Not Found\n")
    r = request(member, "GET", "/nope")
    assert (r.status, r.text) == (404, "404 page not found\n")
    r = request(member, "GET", "/v3/kv/range")
    assert (r.status, r.text) == (405, "Method Not Allowed\n")


def test_json_decoding(member, uniq):
    k = b64(uniq)
    # int64 as a number or a string, enums by name or number, unknown fields ignored,
    # anything after the first JSON value ignored, an empty body is an empty request.
    post_ok(member, "/v3/kv/put", {"key": k, "value": b64("x"), "bogus": [1]})
    got = post_ok(member, "/v3/kv/range", '{"key":"%s","limit":"5","sort_order":2} trailing' % k)
    assert got["count"] == "1"
    got = post_ok(member, "/v3/kv/range", {"key": k, "sort_order": "DESCEND", "sort_target": 1})
    assert got["count"] == "1"
    r = post(member, "/v3/kv/range", "")
    assert r.status == 400 and r.json()["message"] == "etcdserver: key is not provided"


@pytest.mark.parametrize("body", ["garbage", '{"key": "!!!"}', '{"key": 5', '{"limit":"abc"}'])
def test_malformed_json_is_400_code_3(member, body):
    r = post(member, "/v3/kv/range", body)
    assert r.status == 400, r
    e = r.json()
    assert set(e) == {"error", "message", "code"} and e["code"] == 3
    assert e["error"] == e["message"] and e["message"]
    assert r.headers["content-type"] == "application/json"


def test_errors_carry_etcd_messages_and_grpc_gateway_statuses(member, uniq):
    k = b64(uniq)
    cases = [
        ("/v3/kv/put", {"key": ""}, 400, 3, "etcdserver: key is not provided"),
        ("/v3/kv/range", {"key": k, "revision": 10 ** 9}, 400, 11,
         "etcdserver: mvcc: required revision is a future revision"),
        ("/v3/kv/put", {"key": k, "lease": "123"}, 404, 5, "etcdserver: requested lease not found"),
        ("/v3/kv/txn", {"success": [{"request_put": {"key": k}}, {"request_put": {"key": k}}]},
         400, 3, "etcdserver: duplicate key given in txn request"),
    ]
    for path, body, status, code, msg in cases:
        r = post(member, path, body)
        assert r.status == status, (path, body, r)
        assert r.json() == {"error": msg, "message": msg, "code": code}, (path, body, r)
        assert r.headers.get("trailer") == "Grpc-Trailer-Content-Type", r


def test_compaction_and_compacted_error(make_cluster):
    m = make_cluster(1)[0]
    for i in range(3):
        post_ok(m, "/v3/kv/put", {"key": b64("c"), "value": b64(str(i))})
    rev = int(post_ok(m, "/v3/kv/range", {"key": b64("c")})["header"]["revision"])
    c = post_ok(m, "/v3/kv/compaction", {"revision": rev, "physical": True})
    assert set(c) == {"header"}
    r = post(m, "/v3/kv/range", {"key": b64("c"), "revision": rev - 1})
    msg = "etcdserver: mvcc: required revision has been compacted"
    assert (r.status, r.json()) == (400, {"error": msg, "message": msg, "code": 11})


def test_maintenance_status_and_alarm(member):
    st = post_ok(member, "/v3/maintenance/status")
    check_header(st["header"])
    assert st["version"].startswith("3.")
    for f in ("dbSize", "leader", "raftIndex", "raftTerm"):  # etcd's camelCase proto names
        assert isinstance(st[f], str) and int(st[f]) > 0, (f, st)
    assert st["leader"] == st["header"]["member_id"]
    a = post_ok(member, "/v3/maintenance/alarm", {"action": "GET"})
    assert a == {}  # etcd answers alarms without a header; no alarms: no list
    assert post_ok(member, "/v3/maintenance/defragment") == {}  # no header either


def test_cluster_member_list(shared3):
    ml = post_ok(shared3[1], "/v3/cluster/member/list")
    check_header(ml["header"], revision=False)  # etcd leaves the revision out here
    assert sorted(m["name"] for m in ml["members"]) == sorted(m.name for m in shared3.members)
    for e in ml["members"]:
        assert set(e) == {"ID", "name", "peerURLs", "clientURLs"}, e
        m = next(x for x in shared3.members if x.name == e["name"])
        assert e["peerURLs"] == [m.peer_url] and e["clientURLs"] == [m.client_url]
        assert int(e["ID"]) > 0


def test_cors_and_options(member):
    r = request(member, "OPTIONS", "/v3/kv/range")
    assert (r.status, r.body) == (200, b"")
    for path in ("/v3/kv/range", "/nope"):
        r = post(member, path, {"key": b64("x")})
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["access-control-allow-methods"] == "POST, GET, OPTIONS, PUT, DELETE"
        assert r.headers["access-control-allow-headers"] == "accept, content-type, authorization"


def test_http1_beside_grpc_on_one_port(member, uniq):
    """Keep-alive and pipelined requests on one connection, a silent connection that
    must not block anyone, and gRPC clients on the same port meanwhile."""
    silent = socket.create_connection(("127.0.0.1", member.client_port))
    try:
        k = b64(uniq)
        body = '{"key":"%s","value":"%s"}' % (k, b64("p"))
        one = (f"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
               f"{body}")
        get = '{"key":"%s"}' % k
        two = (f"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               f"Content-Length: {len(get)}\r\n\r\n{get}")
        out = raw(member, (one + two).encode())
        assert out.count(b"HTTP/1.1 200 OK\r\n") == 2, out
        assert b'"value":"%s"' % b64("p").encode() in out, out
        # gRPC (etcdctl) on the same port while the silent connection is open
        assert member.ctl_ok("get", uniq, "--print-value-only").out == "p\n"
        c = member.client()
        try:
            assert c.get(uniq)[0] == b"p"
        finally:
            c.close()
    finally:
        silent.close()


def test_malformed_http_gets_400(member):
    for req in (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                b"GET /health HTTP/1.1\r\n\r\n"):  # HTTP/1.1 requires Host
        out = raw(member, req)
        assert out.startswith(b"HTTP/1.1 400 Bad Request"), out
        assert b"Connection: close\r\n" in out, out
    out = raw(member, b"GET /health HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (2 << 20) + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large"), out[:200]
    # and the member still serves
    assert member.ctl_ok("endpoint", "health").ok


@pytest.mark.keel_only(reason="etcd's cmux closes a connection that is neither HTTP/1 nor HTTP/2 "
                       "without a word; keel answers 400")
def test_garbage_gets_400(member):
    out = raw(member, b"NOT HTTP AT ALL\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n"), out


def test_watch_stream(member, uniq, target):
    k = b64(uniq)
    s = Stream(member, "/v3/watch", {"create_request": {"key": k}})
    try:
        implemented(target, s.status)
        assert s.status == 200
        assert s.headers.get("transfer-encoding") == "chunked"
        created = s.next()["result"]
        assert created["created"] is True and set(created) == {"header", "created"}
        post_ok(member, "/v3/kv/put", {"key": k, "value": b64("w")})
        ev = s.next()["result"]
        assert ev["events"][0]["kv"]["value"] == b64("w")
        assert "type" not in ev["events"][0]  # PUT is the default
        check_header(ev["header"])
    finally:
        s.close()


def test_lease_grant_ttl_list_revoke(member, uniq):
    g = post_ok(member, "/v3/lease/grant", {"TTL": 60})
    lid = g["ID"]
    assert g["TTL"] == "60" and int(lid) > 0
    post_ok(member, "/v3/kv/put", {"key": b64(uniq), "value": b64("l"), "lease": lid})
    t = post_ok(member, "/v3/kv/lease/timetolive", {"ID": lid, "keys": True})
    assert t["grantedTTL"] == "60" and t["keys"] == [b64(uniq)]
    t = post_ok(member, "/v3/lease/timetolive", {"ID": lid})
    assert "keys" not in t
    assert {"ID": lid} in post_ok(member, "/v3/lease/leases")["leases"]
    assert {"ID": lid} in post_ok(member, "/v3/kv/lease/leases")["leases"]
    s = Stream(member, "/v3/lease/keepalive", {"ID": lid})
    try:
        ka = s.next()["result"]
        assert ka["ID"] == lid and ka["TTL"] == "60"
    finally:
        s.close()
    post_ok(member, "/v3/lease/revoke", {"ID": lid})
    assert post_ok(member, "/v3/kv/range", {"key": b64(uniq)}).keys() == {"header"}
    r = post(member, "/v3/kv/lease/revoke", {"ID": lid})
    msg = "etcdserver: requested lease not found"
    assert (r.status, r.json()) == (404, {"error": msg, "message": msg, "code": 5})


def test_election_campaign_observe_resign(member, uniq, target):
    lid = post_ok(member, "/v3/lease/grant", {"TTL": 60})["ID"]
    name = b64(uniq)
    r = post(member, "/v3/election/campaign", {"name": name, "lease": lid, "value": b64("v1")})
    implemented(target, r.status)
    assert r.status == 200, r
    leader = r.json()["leader"]
    assert leader["name"] == name and leader["lease"] == lid
    check_header(r.json()["header"])
    got = post_ok(member, "/v3/election/leader", {"name": name})
    assert got["kv"]["key"] == leader["key"] and got["kv"]["value"] == b64("v1")
    post_ok(member, "/v3/election/proclaim", {"leader": leader, "value": b64("v2")})
    s = Stream(member, "/v3/election/observe", {"name": name})
    try:
        assert s.next()["result"]["kv"]["value"] == b64("v2")
    finally:
        s.close()
    post_ok(member, "/v3/election/resign", {"leader": leader})
    r = post(member, "/v3/election/leader", {"name": name})
    assert r.json()["message"] == "election: no leader", r
    post_ok(member, "/v3/lease/revoke", {"ID": lid})


def test_lock_unlock(member, uniq, target):
    lid = post_ok(member, "/v3/lease/grant", {"TTL": 60})["ID"]
    r = post(member, "/v3/lock/lock", {"name": b64(uniq), "lease": lid})
    implemented(target, r.status)
    assert r.status == 200, r
    key = r.json()["key"]
    assert base64.b64decode(key).decode().startswith(uniq + "/")
    assert post_ok(member, "/v3/kv/range", {"key": key})["count"] == "1"
    post_ok(member, "/v3/lock/unlock", {"key": key})
    assert "count" not in post_ok(member, "/v3/kv/range", {"key": key})
    post_ok(member, "/v3/lease/revoke", {"ID": lid})


def test_member_add_learner_and_remove(make_cluster, target):
    m = make_cluster(1)[0]
    r = post(m, "/v3/cluster/member/add", {"peerURLs": ["http://127.0.0.1:1"], "isLearner": True})
    implemented(target, r.status)
    assert r.status == 200, r
    added = r.json()["member"]
    assert added["peerURLs"] == ["http://127.0.0.1:1"] and added["isLearner"] is True
    assert "name" not in added  # not started yet
    ids = {x["ID"] for x in post_ok(m, "/v3/cluster/member/list")["members"]}
    assert added["ID"] in ids and len(ids) == 2
    post_ok(m, "/v3/cluster/member/remove", {"ID": added["ID"]})
    assert len(post_ok(m, "/v3/cluster/member/list")["members"]) == 1
    r = post(m, "/v3/cluster/member/remove", {"ID": added["ID"]})
    assert r.status == 404 and r.json()["message"] == "etcdserver: member not found", r


def test_snapshot_stream(member, target):
    s = Stream(member, "/v3/maintenance/snapshot", {})
    try:
        implemented(target, s.status)
        assert s.status == 200
        total = 0
        for line in s.resp:  # until the stream ends
            obj = json.loads(line)
            assert set(obj) == {"result"}, obj  # no error object
            total += len(base64.b64decode(obj["result"].get("blob", "")))
        assert total > 0
    finally:
        s.close()
