"""keel's membership extensions and the corruption check.

- `keel member replace`: several voters replaced at once through joint
  consensus (proto/keelpb/keel.proto), under a write load, losing nothing.
- the CORRUPT alarm: a member whose store was altered behind Raft's back
  (`keel debug put-local`, test only) is found by the leader's periodic
  HashKV comparison; the cluster then refuses writes as etcd does."""

import re
import subprocess

import pytest

from cluster import LoadWriter, decode_kvs, keel_bin, wait_for

pytestmark = pytest.mark.keel_only


def member_id(m) -> int:
    return int(m.status()["header"]["member_id"])


def keel(*args: str) -> str:
    p = subprocess.run([keel_bin(), *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"keel {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def test_joint_replace_under_load(make_cluster):
    """Replace m1 and m2 by m3 and m4 in one joint change, under load."""
    c = make_cluster(3)
    load = LoadWriter([c[0]], "joint/").start()
    try:
        wait_for(lambda: load.acked_count() >= 50, 30, "first writes")
        m3, m4 = c.new_member("m3"), c.new_member("m4")
        out = keel("member", "replace", "--endpoint", c[1].endpoint,
                   "--add", m3.peer_url, "--add", m4.peer_url)
        ids = [int(x, 16) for x in re.findall(r"Member ([0-9a-f]+) added as a learner", out)]
        assert len(ids) == 2, out
        for m in (m3, m4):
            m.initial_cluster = f"m0={c[0].peer_url},{m.name}={m.peer_url}"
            m.start()
        old = [member_id(c[1]), member_id(c[2])]

        def replace():
            p = subprocess.run(
                [keel_bin(), "member", "replace", "--endpoint", c[2].endpoint,
                 *[a for i in ids for a in ("--promote", f"{i:x}")],
                 *[a for i in old for a in ("--remove", f"{i:x}")]],
                capture_output=True, text=True, timeout=60)
            if p.returncode == 0:
                return True
            assert "in sync with leader" in p.stderr, p.stderr
            return False
        wait_for(replace, 60, "the learners to catch up and the joint change to apply",
                 interval=0.3)
        members = c[0].ctl_ok("member", "list", "-w", "json").json()["members"]
        assert sorted(int(m["ID"]) for m in members) == sorted([member_id(c[0])] + ids)
        assert not any(m.get("isLearner") for m in members)
        # The removed members stop once out of every configuration.
        c[1].wait_exit(30)
        c[2].wait_exit(30)
        n = load.acked_count()
        wait_for(lambda: load.acked_count() >= n + 50, 30, "writes on the new configuration")
        # The new voters carry the quorum: with m0 down, m3 and m4 serve.
        c[0].kill()
        c.wait_leader(20)
        m3.ctl_ok("put", "quorum", "of-new-members")
    finally:
        acked = load.stop()
    r = m4.ctl_ok("get", "joint/", "--prefix", "-w", "json", command_timeout="20s").json()
    got = {kv["key"]: kv["value"] for kv in decode_kvs(r)}
    lost = {k for k, v in acked.items() if got.get(k) != v}
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {sorted(lost)[:5]}"


def test_corrupt_member_raises_alarm(make_cluster):
    c = make_cluster(3, extra_flags={"experimental-corrupt-check-time": "1s"})
    with c[0].client() as cl:
        for i in range(20):
            cl.put(f"c{i}", str(i))
    leader = c.leader()
    victim = next(m for m in c.members if m is not leader)
    vid = member_id(victim)
    victim.kill()
    keel("debug", "put-local", f"--data-dir={victim.data_dir}", "c3", "tampered")
    victim.start()
    victim.wait_healthy(30)
    with leader.client() as cl:
        for i in range(5):
            cl.put(f"after{i}", str(i))

    def alarmed():
        out = leader.ctl_ok("alarm", "list").out
        return "alarm:CORRUPT" in out and out
    out = wait_for(alarmed, 30, "the leader to raise the CORRUPT alarm")
    assert f"memberID:{vid} alarm:CORRUPT" in out, out
    r = leader.ctl("put", "x", "y")
    assert r.error_line() == "etcdserver: corrupt cluster", repr(r)
    # Reads are still served.
    assert leader.ctl_ok("get", "c1", "--print-value-only").out.strip() == "1"
