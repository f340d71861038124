"""Maintenance.Snapshot and restore: `etcdctl snapshot save` from a running
cluster, restored into a fresh 3-member cluster (etcd: `etcdctl snapshot
restore`; keel: `keel snapshot restore` with the same flags, since etcdctl
can only read etcd's bbolt files), which must hold the same data with the
same HashKV at the same revision. And Maintenance.Hash."""

import subprocess

import pytest

from cluster import ETCDCTL_BIN, decode_kvs, keel_bin, wait_for


def hashkv(m, rev: int) -> int:
    r = m.ctl_ok("endpoint", "hashkv", "--rev", str(rev), "-w", "json").json()
    return int(r[0]["HashKV"]["hash"])


def dump(m, prefix: str = "") -> dict:
    r = m.ctl_ok("get", prefix, "--prefix", "-w", "json").json()
    return {kv["key"]: (kv["value"], kv["mod_revision"], kv["create_revision"], kv["version"])
            for kv in decode_kvs(r)}


def run_restore(target: str, snap, m) -> subprocess.CompletedProcess:
    """Restores snapshot file `snap` into member m's data dir, as a member of
    m's cluster (etcdctl for etcd, `keel snapshot restore` for keel)."""
    c = m.cluster
    flags = ["--name", m.name, "--initial-cluster", c.initial_cluster(),
             "--initial-cluster-token", c.token,
             "--initial-advertise-peer-urls", m.peer_url, "--data-dir", str(m.data_dir)]
    tool = ETCDCTL_BIN if target == "etcd" else keel_bin()
    return subprocess.run([tool, "snapshot", "restore", str(snap), *flags],
                          capture_output=True, text=True, timeout=60,
                          env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})


def restore(target: str, snap, m) -> None:
    p = run_restore(target, snap, m)
    assert p.returncode == 0, f"{p.args} -> {p.returncode}\n{p.stdout}\n{p.stderr}"


def test_snapshot_save_restore_same_hashkv(target, make_cluster, tmp_path):
    src = make_cluster(3)
    ep = src[0]
    with ep.client() as cl:
        for i in range(200):
            cl.put(f"k{i % 50:03d}", f"v{i}")
        cl.delete("k000")
        rev = int(ep.status()["header"]["revision"])
        ep.ctl_ok("compact", str(rev - 60))
        for i in range(20):
            cl.put(f"late{i}", "x" * i)
    rev = int(ep.status()["header"]["revision"])
    want_hash = hashkv(ep, rev)
    want = dump(ep)

    snap = tmp_path / "snap.db"
    r = ep.ctl_ok("snapshot", "save", str(snap), timeout=60, command_timeout="30s")
    assert snap.stat().st_size > 32
    # Saved from the source; the source goes on changing, the snapshot not.
    ep.ctl_ok("put", "after-snapshot", "1")

    dst = make_cluster(3, start=False, name="restored")
    for m in dst.members:
        restore(target, snap, m)
    dst.start()
    for m in dst.members:
        assert int(m.status()["header"]["revision"]) == rev
        assert hashkv(m, rev) == want_hash, f"{m.name}: HashKV differs from the source"
    assert dump(dst[1]) == want
    # The restored cluster takes writes and agrees on them.
    dst[2].ctl_ok("put", "new", "write")
    wait_for(lambda: len({hashkv(m, rev + 1) for m in dst.members}) == 1, 20,
             "every restored member to agree after a write")


def test_restore_refuses_damaged_file(target, make_cluster, tmp_path):
    src = make_cluster(1)
    src[0].ctl_ok("put", "a", "b")
    snap = tmp_path / "snap.db"
    src[0].ctl_ok("snapshot", "save", str(snap), timeout=60, command_timeout="30s")
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snap.write_bytes(bytes(data))
    dst = make_cluster(1, start=False, name="restored")
    m = dst[0]
    p = run_restore(target, snap, m)
    assert p.returncode != 0, p.stdout + p.stderr
    assert not m.data_dir.exists() or not any(m.data_dir.rglob("*.sst")), \
        "a damaged snapshot left a store behind"


def test_hash_same_on_every_member(target, make_cluster):
    c = make_cluster(3)
    with c[0].client() as cl:
        for i in range(30):
            cl.put(f"h{i}", str(i))
    leader = c.leader()
    want = int(leader.status()["header"]["revision"])

    def hashes():
        out = set()
        for m in c.members:
            with m.client() as cl:
                from etcd3 import etcdrpc
                resp = cl.maintenancestub.Hash(etcdrpc.HashRequest(), timeout=5)
                if resp.header.revision != want:
                    return None
                out.add(resp.hash)
        return out
    from etcd3 import etcdrpc  # noqa: F401
    hs = wait_for(hashes, 20, "every member at the same revision")
    assert len(hs) == 1 and next(iter(hs)) != 0
    c[0].ctl_ok("put", "h0", "changed")
    want = int(leader.status()["header"]["revision"])
    hs2 = wait_for(hashes, 20, "every member at the new revision")
    assert len(hs2) == 1 and hs2 != hs
