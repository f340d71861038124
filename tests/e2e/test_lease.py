"""Leases through etcdctl and python3-etcd3: grant, revoke, timetolive, list
and keep-alive with etcd's outputs and errors; expiry decided by the leader
and applied through Raft; keep-alive across a leader change."""

import re
import subprocess
import threading
import time

import grpc
import pytest

from cluster import ETCDCTL_BIN, decode_kvs, wait_for

NOT_FOUND = "etcdserver: requested lease not found"
# ceil(1.5 election timeouts) with the suite's 500 ms election timeout.
MIN_TTL = 1


def grant(m, ttl) -> tuple[int, int]:
    out = m.ctl_ok("lease", "grant", str(ttl)).out
    g = re.fullmatch(r"lease ([0-9a-f]{16}) granted with TTL\((\d+)s\)\n", out)
    assert g, out
    return int(g[1], 16), int(g[2])


def revision(m) -> int:
    return int(m.ctl_ok("get", "-w", "json", "/no-such-key").json()["header"]["revision"])


def test_lease_grant_revoke_timetolive_list(member, uniq):
    lid, ttl = grant(member, 300)
    assert ttl == 300
    # Shorter than the minimum (enough for an election): raised to it.
    short, ttl = grant(member, 0)
    assert ttl == MIN_TTL
    r = member.ctl("lease", "grant", "9000000001")
    assert not r.ok and r.error_line() == "failed to grant lease (etcdserver: too large lease TTL)", repr(r)
    assert lid in [int(x["id"]) for x in member.ctl_ok("lease", "list", "-w", "json").json()["leases"]]

    k1, k2 = uniq + "a", uniq + "b"
    member.ctl_ok("put", k1, "1", f"--lease={lid:x}")
    member.ctl_ok("put", k2, "2", f"--lease={lid:x}")
    t = member.ctl_ok("lease", "timetolive", f"{lid:x}", "--keys", "-w", "json").json()
    assert t["id"] == lid and t["granted-ttl"] == 300 and 290 <= t["ttl"] <= 300
    assert sorted(decode_kvs({"kvs": [{"key": k} for k in t["keys"]]})[i]["key"] for i in range(2)) == [k1, k2]
    out = member.ctl_ok("lease", "timetolive", f"{lid:x}").out
    assert re.fullmatch(rf"lease {lid:016x} granted with TTL\(300s\), remaining\(\d+s\)\n", out), out
    k = member.ctl_ok("lease", "keep-alive", "--once", f"{lid:x}", "-w", "json").json()
    assert k["ID"] == lid and k["TTL"] == 300

    # Revoke deletes both keys in one revision.
    before = revision(member)
    r = member.ctl_ok("lease", "revoke", f"{lid:x}", "-w", "json").json()
    assert int(r["header"]["revision"]) == before + 1
    assert member.ctl_ok("get", uniq, "--prefix").out == ""
    assert member.ctl_ok("lease", "timetolive", f"{lid:x}").out == f"lease {lid:016x} already expired\n"
    t = member.ctl_ok("lease", "timetolive", f"{lid:x}", "-w", "json").json()
    assert t["ttl"] == -1 and t["granted-ttl"] == 0

    # Unknown leases.
    for args in (["lease", "revoke", f"{lid:x}"], ["put", k1, "v", f"--lease={lid:x}"],
                 ["lease", "keep-alive", "--once", f"{lid:x}"]):
        r = member.ctl(*args)
        assert not r.ok and NOT_FOUND in r.error_line(), repr(r)
    assert lid not in [int(x["id"]) for x in member.ctl_ok("lease", "list", "-w", "json").json()["leases"]]


def test_lease_grant_with_id(member, uniq):
    from etcd3 import etcdrpc
    c = member.client()
    try:
        lid = 0x1234_5678_9abc_0000 + (sum(uniq.encode()) & 0xffff)
        r = c.leasestub.LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=600, ID=lid), timeout=5)
        assert r.ID == lid and r.TTL == 600 and r.error == ""
        try:
            c.leasestub.LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=600, ID=lid), timeout=5)
            raise AssertionError("a second grant of the same id succeeded")
        except grpc.RpcError as e:
            assert (e.code(), e.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                               "etcdserver: lease already exists")
        c.leasestub.LeaseRevoke(etcdrpc.LeaseRevokeRequest(ID=lid), timeout=5)
        # A keep-alive of an unknown lease answers TTL 0; the stream goes on.
        answers = list(c.leasestub.LeaseKeepAlive(
            iter([etcdrpc.LeaseKeepAliveRequest(ID=lid)] * 2), timeout=5))
        assert [(a.ID, a.TTL) for a in answers] == [(lid, 0), (lid, 0)]
    finally:
        c.close()


def test_lease_expiry_deletes_attached_keys(member, uniq):
    lid, ttl = grant(member, MIN_TTL)
    keys = [uniq + str(i) for i in range(3)]
    for k in keys:
        member.ctl_ok("put", k, "v", f"--lease={lid:x}")
    rev = revision(member)
    wait_for(lambda: member.ctl_ok("get", uniq, "--prefix").out == "", 15,
             "the keys of an expired lease to be deleted")
    assert member.ctl_ok("lease", "timetolive", f"{lid:x}", "-w", "json").json()["ttl"] == -1
    # All deleted in the one revision after `rev` (nothing else writes here).
    assert member.ctl_ok("get", uniq, "--prefix", "--keys-only", f"--rev={rev}").out.split() == keys
    assert member.ctl_ok("get", uniq, "--prefix", f"--rev={rev + 1}").out == ""


class KeepAlive:
    """`etcdctl lease keep-alive` in the background; records when each answer came."""

    def __init__(self, endpoints, lease_id):
        self.proc = subprocess.Popen(
            [ETCDCTL_BIN, "--endpoints=" + ",".join(endpoints), "--dial-timeout=2s",
             "lease", "keep-alive", f"{lease_id:x}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def renewed_after(self, t: float) -> list[float]:
        return [ts for ts, line in self.lines if ts > t and "keepalived with TTL" in line]

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


def test_keepalive_holds_lease_across_leader_change(make_cluster, uniq):
    c = make_cluster(3)
    leader = c.leader()
    follower = next(m for m in c.members if m is not leader)
    ttl = 3
    held, _ = grant(follower, ttl)
    loose, _ = grant(follower, ttl)
    follower.ctl_ok("put", uniq + "held", "v", f"--lease={held:x}")
    follower.ctl_ok("put", uniq + "loose", "v", f"--lease={loose:x}")
    others = [m for m in c.members if m is not leader]
    ka = KeepAlive([m.endpoint for m in others], held)
    try:
        wait_for(lambda: ka.renewed_after(0), 10, "a first keep-alive answer")
        leader.kill()
        killed_at = time.monotonic()
        c.wait_leader(20)
        # The keep-alive answers after the leader change span more than the
        # TTL: had the lease expired, the key would be gone.
        wait_for(lambda: (lambda r: len(r) >= 2 and r[-1] - killed_at > ttl + 1)(ka.renewed_after(killed_at)),
                 30, f"keep-alive answers for more than {ttl + 1} s after the leader was killed")
        for m in others:
            got = m.ctl_ok("get", uniq + "held", "--consistency=s").out
            assert got == f"{uniq}held\nv\n", f"{m.name}: {got!r}"
        t = others[0].ctl_ok("lease", "timetolive", f"{held:x}", "-w", "json").json()
        assert 0 < t["ttl"] <= ttl + c.election_s + 1 and t["granted-ttl"] == ttl, t
        # The lease nobody kept alive expired after the change, through Raft.
        wait_for(lambda: all(m.ctl_ok("get", uniq + "loose", "--consistency=s").out == "" for m in others),
                 20, "the lease not kept alive to expire")
    finally:
        ka.stop()


def test_leases_survive_restart(make_cluster, uniq):
    c = make_cluster(1)
    m = c[0]
    lid, _ = grant(m, 600)
    m.ctl_ok("put", uniq + "k", "v", f"--lease={lid:x}")
    m.kill()
    m.start()
    m.wait_healthy()
    t = m.ctl_ok("lease", "timetolive", f"{lid:x}", "--keys", "-w", "json").json()
    assert t["granted-ttl"] == 600 and 0 < t["ttl"] <= 600 and len(t["keys"]) == 1, t
    m.ctl_ok("lease", "revoke", f"{lid:x}")
    assert m.ctl_ok("get", uniq + "k").out == ""


def test_watchers_see_the_deletes_of_a_revoked_lease(member, uniq):
    lid, _ = grant(member, 600)
    member.ctl_ok("put", uniq + "a", "1", f"--lease={lid:x}")
    member.ctl_ok("put", uniq + "b", "2", f"--lease={lid:x}")
    rev = revision(member)
    w = subprocess.Popen([ETCDCTL_BIN, f"--endpoints={member.endpoint}", "watch", "--prefix", uniq,
                          f"--rev={rev + 1}", "-w", "json"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    try:
        member.ctl_ok("lease", "revoke", f"{lid:x}")
        line = w.stdout.readline()  # one response: both deletes, one revision
        events = __import__("json").loads(line)["Events"]
        assert [(e.get("type"), e["kv"]["mod_revision"]) for e in events] == \
            [(1, rev + 1), (1, rev + 1)], events  # 1: DELETE
    finally:
        w.kill()
        w.wait(timeout=10)
