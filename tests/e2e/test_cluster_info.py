"""endpoint status / health, member list, on 1 and 3 members, in every output format."""

import re

import pytest

from cluster import ctl_ok, wait_for


def parse_table(out: str) -> tuple[list[str], list[list[str]]]:
    """An etcdctl -w table: (header cells, rows of cells)."""
    lines = [l for l in out.splitlines() if l.startswith("|")]
    cells = [[c.strip() for c in l.strip("|").split("|")] for l in lines]
    return cells[0], cells[1:]


def member_list_json(endpoints) -> dict:
    return ctl_ok(endpoints, "member", "list", "-w", "json").json()


def check_member_list(c, ml: dict) -> dict[int, str]:
    """Checks a member list against the cluster; returns {id: name}."""
    members = ml["members"]
    assert len(members) == len(c)
    by_name = {m["name"]: m for m in members}
    assert set(by_name) == {m.name for m in c.members}
    for m in c.members:
        e = by_name[m.name]
        assert e["peerURLs"] == [m.peer_url]
        assert e["clientURLs"] == [m.client_url]
        assert int(e["ID"]) != 0
        assert not e.get("isLearner", False)
    ids = [int(e["ID"]) for e in members]
    assert len(set(ids)) == len(ids)
    assert int(ml["header"]["cluster_id"]) != 0
    assert int(ml["header"]["member_id"]) in ids
    return {int(e["ID"]): e["name"] for e in members}


@pytest.fixture(params=[1, 3], ids=["1member", "3members"])
def any_cluster(request, shared1, shared3):
    return shared1 if request.param == 1 else shared3


def test_member_list(any_cluster):
    c = any_cluster
    # A member has client URLs only once it has published itself through
    # Raft, which may come after the cluster is healthy (etcd alike).
    wait_for(lambda: all(e.get("clientURLs") for e in member_list_json(c.endpoints)["members"]),
             20, "every member to publish its client URLs")
    ids = None
    cluster_ids = set()
    for m in c.members:
        ml = member_list_json(m.endpoint)
        got = check_member_list(c, ml)
        assert ids is None or got == ids, "members disagree on the member list"
        ids = got
        cluster_ids.add(int(ml["header"]["cluster_id"]))
        # the header names the member that answered
        assert int(ml["header"]["member_id"]) == int(m.status()["header"]["member_id"])
    assert len(cluster_ids) == 1

    name_to_id = {n: i for i, n in ids.items()}
    # simple format: "id, started, name, peer, client, false" sorted as etcd sends them
    lines = ctl_ok(c.endpoints, "member", "list").out.splitlines()
    assert sorted(lines) == sorted(
        f"{name_to_id[m.name]:x}, started, {m.name}, {m.peer_url}, {m.client_url}, false" for m in c.members)
    # table format
    head, rows = parse_table(ctl_ok(c.endpoints, "member", "list", "-w", "table").out)
    assert head == ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"]
    assert sorted(rows) == sorted(
        [f"{name_to_id[m.name]:x}", "started", m.name, m.peer_url, m.client_url, "false"] for m in c.members)


def test_endpoint_status(any_cluster):
    c = any_cluster
    ml = member_list_json(c.endpoints)
    ids = {int(e["ID"]) for e in ml["members"]}
    cluster_id = int(ml["header"]["cluster_id"])

    statuses = ctl_ok(c.endpoints, "endpoint", "status", "-w", "json").json()
    assert [s["Endpoint"] for s in statuses] == c.endpoints
    leaders = set()
    terms = set()
    seen = set()
    for s in statuses:
        st = s["Status"]
        h = st["header"]
        assert int(h["cluster_id"]) == cluster_id
        mid = int(h["member_id"])
        assert mid in ids
        seen.add(mid)
        leaders.add(int(st["leader"]))
        terms.add(int(st["raftTerm"]))
        assert re.fullmatch(r"3\.\d+\.\d+", st["version"]), st["version"]
        assert int(st["dbSize"]) > 0
        assert int(st["raftIndex"]) >= int(st["raftAppliedIndex"]) > 0
        assert int(h["raft_term"]) == int(st["raftTerm"]) >= 1
        assert int(h["revision"]) >= 1
        assert "errors" not in st
    assert seen == ids
    assert len(leaders) == 1 and leaders <= ids
    assert len(terms) == 1

    # table format
    head, rows = parse_table(ctl_ok(c.endpoints, "endpoint", "status", "-w", "table").out)
    assert head == ["ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER", "RAFT TERM",
                    "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS"]
    assert [r[0] for r in rows] == c.endpoints
    assert sorted(r[4] for r in rows) == ["false"] * (len(c) - 1) + ["true"]
    assert {int(r[1], 16) for r in rows} == ids
    assert all(r[5] == "false" and r[9] == "" for r in rows)
    (leader,) = leaders
    assert {r[4] for r in rows if int(r[1], 16) == leader} == {"true"}

    # --cluster: the endpoints come from the member list
    st = ctl_ok(c.endpoints[0], "endpoint", "status", "--cluster", "-w", "json").json()
    assert sorted(s["Endpoint"] for s in st) == sorted(m.client_url for m in c.members)


def test_endpoint_health(any_cluster):
    c = any_cluster
    r = ctl_ok(c.endpoints, "endpoint", "health")
    # etcdctl prints to stderr for health (one line each, in any order)
    lines = sorted(l for l in (r.out + r.err).splitlines() if "healthy" in l)
    assert len(lines) == len(c), repr(r)
    for ep, line in zip(sorted(c.endpoints), lines):
        assert re.fullmatch(re.escape(ep) + r" is healthy: successfully committed proposal: took = \S+", line), line
    hj = ctl_ok(c.endpoints, "endpoint", "health", "-w", "json").json()
    assert sorted(h["endpoint"] for h in hj) == sorted(c.endpoints)
    assert all(h["health"] is True and "error" not in h for h in hj)
    head, rows = parse_table(ctl_ok(c.endpoints[-1], "endpoint", "health", "--cluster", "-w", "table").out)
    assert head == ["ENDPOINT", "HEALTH", "TOOK", "ERROR"]
    assert sorted(r[0] for r in rows) == sorted(m.client_url for m in c.members)
    assert all(r[1] == "true" and r[3] == "" for r in rows)


def test_endpoint_health_of_a_dead_endpoint(shared1):
    from cluster import free_port
    dead = f"127.0.0.1:{free_port()}"
    from cluster import etcdctl
    r = etcdctl([shared1.endpoints[0], dead], "endpoint", "health", "-w", "json", command_timeout="2s")
    assert r.rc != 0
    hj = r.json()
    by = {h["endpoint"]: h for h in hj}
    assert by[shared1.endpoints[0]]["health"] is True
    assert by[dead]["health"] is False


def test_default_timings(make_cluster):
    """Three members with etcd's default heartbeat (100 ms) and election timeout (1000 ms)."""
    c = make_cluster(3, heartbeat_ms=None, election_ms=None)
    leader = c.leader()
    ctl_ok(leader.endpoint, "put", "/defaults", "yes")
    for m in c.members:
        assert m.ctl_ok("get", "/defaults", "--print-value-only").out == "yes\n"
