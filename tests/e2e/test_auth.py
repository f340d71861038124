"""Authentication and RBAC with etcd's Auth service: users with bcrypt
passwords, roles with key and prefix permissions, the root user and role,
auth enable/disable, simple tokens, the client certificate's common name as
the user. Every KV request is checked (inside transactions too), watches and
lease revokes as well; a revoked permission refuses the next request at once,
also through a token issued before it. Errors are etcd's, byte for byte."""

import grpc
import pytest

from cluster import b64, etcdctl, pipelined_puts, wait_for
from httpc import post
from test_tls import certs, ctl_as  # noqa: F401  (session fixture)

USER_EMPTY = "etcdserver: user name is empty"
AUTH_FAILED = "etcdserver: authentication failed, invalid user ID or password"
DENIED = "etcdserver: permission denied"
ROOT_MISSING = "etcdserver: root user does not exist"
NOT_ENABLED = "etcdserver: authentication is not enabled"
INVALID_MGMT = "etcdserver: invalid auth management"
ROLE_NOT_GRANTED = "etcdserver: role is not granted to the user"
PERM_NOT_GRANTED = "etcdserver: permission is not granted to the role"
USER_EXISTS = "etcdserver: user name already exists"
ROLE_MISSING = "etcdserver: role name not found"
RAW_DENIED = "rpc error: code = Unknown desc = auth: permission denied"

ROOT = "--user=root:rootpw"
ALICE = "--user=alice:alicepw"


def setup_users(m, *, enable=True):
    """root; alice with read on the prefix /r/ and readwrite on the key /w."""
    m.ctl_ok("user", "add", "root:rootpw")
    m.ctl_ok("role", "add", "reader")
    m.ctl_ok("role", "grant-permission", "reader", "read", "/r/", "--prefix=true")
    m.ctl_ok("role", "grant-permission", "reader", "readwrite", "/w")
    m.ctl_ok("user", "add", "alice:alicepw")
    m.ctl_ok("user", "grant-role", "alice", "reader")
    if enable:
        # etcdctl adds the root role and grants it to root when it is missing.
        m.ctl_ok("auth", "enable")


def user_client(m, user, password):
    """python3-etcd3 as `user`, its token sent as plain metadata: grpcio refuses
    call credentials on an insecure channel."""
    import etcd3
    cli = etcd3.client(host="127.0.0.1", port=m.client_port, user=user, password=password)
    cli.call_credentials = None
    return cli


def err(r):
    assert not r.ok, repr(r)
    return r.error_line()


def test_enable_needs_root_and_root_stays(make_cluster):
    m = make_cluster(1)[0]
    assert err(m.ctl("auth", "enable")) == ROOT_MISSING
    assert err(m.ctl("user", "grant-role", "nobody", "root")) == "etcdserver: user name not found"
    setup_users(m)
    assert err(m.ctl(ROOT, "user", "add", "alice:x")) == USER_EXISTS
    assert err(m.ctl(ROOT, "user", "grant-role", "alice", "nope")) == ROLE_MISSING
    assert err(m.ctl(ROOT, "user", "revoke-role", "alice", "nope")) == ROLE_NOT_GRANTED
    assert err(m.ctl(ROOT, "role", "revoke-permission", "reader", "/nope")) == PERM_NOT_GRANTED
    # Root may not lose its role, nor be deleted, while auth is on.
    assert err(m.ctl(ROOT, "user", "revoke-role", "root", "root")) == INVALID_MGMT
    assert err(m.ctl(ROOT, "user", "delete", "root")) == INVALID_MGMT
    assert err(m.ctl(ROOT, "role", "delete", "root")) == INVALID_MGMT
    # Without credentials nothing goes; a wrong password or user fails.
    assert err(m.ctl("put", "k", "v")) == USER_EMPTY
    assert err(m.ctl("--user=root:bad", "put", "k", "v")) == AUTH_FAILED
    assert err(m.ctl("--user=nobody:x", "put", "k", "v")) == AUTH_FAILED
    # Only root administers.
    assert err(m.ctl(ALICE, "user", "add", "eve:x")) == DENIED
    assert err(m.ctl(ALICE, "user", "list")) == DENIED
    assert err(m.ctl(ALICE, "auth", "disable")) == DENIED
    r = m.ctl(ALICE, "defrag")
    assert not r.ok and RAW_DENIED in r.err, r
    assert err(m.ctl(ALICE, "snapshot", "save", str(m.data_dir) + ".snap")) == RAW_DENIED
    assert err(m.ctl(ALICE, "member", "add", "x", "--peer-urls=http://127.0.0.1:1")) == DENIED
    # ... but a user reads itself and its own roles (as etcd).
    assert "Roles: reader" in m.ctl_ok(ALICE, "user", "get", "alice").out
    assert "[/r/, /r0) (prefix /r/)" in m.ctl_ok(ALICE, "role", "get", "reader").out
    assert err(m.ctl(ALICE, "user", "get", "root")) == DENIED
    assert err(m.ctl(ALICE, "role", "get", "root")) == DENIED
    assert m.ctl_ok(ROOT, "user", "list").out.split() == ["alice", "root"]
    m.ctl_ok(ROOT, "auth", "disable")
    m.ctl_ok("put", "k", "v")  # anyone again
    # etcdctl goes on without a token when auth is off, after a warning.
    r = m.ctl_ok(ALICE, "get", "k", "--print-value-only")
    assert r.out == "v\n" and NOT_ENABLED in r.err, r


def test_kv_txn_watch_lease_permissions(make_cluster):
    m = make_cluster(1)[0]
    setup_users(m)
    m.ctl_ok(ROOT, "put", "/r/a", "1")
    m.ctl_ok(ROOT, "put", "/other", "2")
    lease = m.ctl_ok(ROOT, "lease", "grant", "100").out.split()[1]
    m.ctl_ok(ROOT, "put", "/other/leased", "x", "--lease=" + lease)
    assert m.ctl_ok(ALICE, "get", "/r/a", "--print-value-only").out == "1\n"
    assert m.ctl_ok(ALICE, "get", "/r/", "--prefix", "--print-value-only").out == "1\n"
    assert err(m.ctl(ALICE, "get", "/other")) == DENIED
    assert err(m.ctl(ALICE, "get", "/r", "--prefix")) == DENIED  # wider than granted
    assert err(m.ctl(ALICE, "get", "", "--from-key")) == DENIED
    assert err(m.ctl(ALICE, "put", "/r/a", "x")) == DENIED  # read only
    assert err(m.ctl(ALICE, "del", "/r/a")) == DENIED
    assert err(m.ctl(ALICE, "del", "/w", "--prefix")) == DENIED  # /w only, not /w*
    m.ctl_ok(ALICE, "put", "/w", "mine")
    m.ctl_ok(ALICE, "del", "/w")
    # Transactions: every compare and both branches, whichever runs.
    only_compare = 'value("/other") = "2"\n\nget /r/a\n\n\n'
    only_failure = 'value("/r/a") = "1"\n\nget /r/a\n\nput /other x\n\n'
    assert err(m.ctl(ALICE, "txn", input=only_compare)) == DENIED
    assert err(m.ctl(ALICE, "txn", input=only_failure)) == DENIED
    r = m.ctl_ok(ALICE, "txn", input='value("/r/a") = "1"\n\nput /w 1\n\nget /r/a\n\n')
    assert r.out.startswith("SUCCESS"), r
    assert m.ctl_ok(ROOT, "get", "/other", "--print-value-only").out == "2\n"
    # Watches need read on the watched range.
    r = etcdctl(m.endpoint, ALICE, "watch", "/other", timeout=10)
    assert "watch was canceled (rpc error: code = PermissionDenied desc = " + DENIED + ")" in r.err, r
    # A lease whose keys alice may not write: no revoke, no attaching.
    assert err(m.ctl(ALICE, "lease", "revoke", lease)) == "failed to revoke lease (" + DENIED + ")"
    assert err(m.ctl(ALICE, "put", "/w", "v", "--lease=" + lease)) == DENIED
    assert "remaining" in m.ctl_ok(ROOT, "lease", "timetolive", lease).out
    # Any user compacts (etcd does not check compaction).
    m.ctl_ok(ALICE, "compaction", "2")


@pytest.mark.keel_only(reason="etcd 3.5's checkLeaseTimeToLive: keys shown only to readers")
def test_lease_timetolive_keys_need_read(make_cluster):
    m = make_cluster(1)[0]
    setup_users(m)
    lease = m.ctl_ok(ROOT, "lease", "grant", "100").out.split()[1]
    m.ctl_ok(ROOT, "put", "/other", "x", "--lease=" + lease)
    assert "remaining" in m.ctl_ok(ALICE, "lease", "timetolive", lease).out
    assert err(m.ctl(ALICE, "lease", "timetolive", lease, "--keys")) == DENIED
    assert "/other" in m.ctl_ok(ROOT, "lease", "timetolive", lease, "--keys").out


def test_revoke_takes_effect_at_once_on_every_member(make_cluster):
    c = make_cluster(3)
    m = c[0]
    setup_users(m)
    m.ctl_ok(ROOT, "role", "grant-permission", "reader", "readwrite", "/r/", "--prefix=true")
    m.ctl_ok(ROOT, "put", "/r/a", "1")
    # Clients authenticated now keep their tokens across the changes below.
    clis = [user_client(x, "alice", "alicepw") for x in c.members]
    try:
        for cli in clis:
            assert cli.get("/r/a")[0] == b"1"
        clis[1].put("/r/b", "2")

        def refused(fn):
            with pytest.raises(grpc.RpcError) as ei:
                fn()
            assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED, ei.value
            assert ei.value.details() == DENIED

        m.ctl_ok(ROOT, "role", "revoke-permission", "reader", "/r/", "--prefix=true")
        for cli in clis:  # linearizable reads and writes: refused at once, everywhere
            refused(lambda: cli.get("/r/a"))
            refused(lambda: cli.put("/r/a", "x"))
            refused(lambda: cli.transaction(compare=[], success=[cli.transactions.get("/r/a")],
                                            failure=[]))
        # A serializable read answers from the member's own state, which has
        # the revoke: the linearizable reads above waited for it to apply.
        for cli in clis:
            refused(lambda: cli.get("/r/a", serializable=True))
        m.ctl_ok(ROOT, "role", "grant-permission", "reader", "read", "/r/", "--prefix=true")
        assert clis[2].get("/r/a")[0] == b"1"
        m.ctl_ok(ROOT, "user", "revoke-role", "alice", "reader")
        for cli in clis:
            refused(lambda: cli.get("/r/a"))
    finally:
        for cli in clis:
            cli.close()
    assert m.ctl_ok(ROOT, "get", "/r/a", "--print-value-only").out == "1\n"
    # Lease calls a follower forwards to the leader work with auth on.
    lease = m.ctl_ok(ROOT, "lease", "grant", "100").out.split()[1]
    m.ctl_ok(ROOT, "put", "/leased", "x", "--lease=" + lease)
    for x in c.members:
        assert "attached keys([/leased])" in x.ctl_ok(ROOT, "lease", "timetolive", lease, "--keys").out
    with pytest.raises(grpc.RpcError) as ei:
        user_client(m, "alice", "bad")
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ei.value.details() == AUTH_FAILED


def test_restart_keeps_users_and_permissions(make_cluster):
    c = make_cluster(1)
    m = c[0]
    setup_users(m)
    m.ctl_ok(ROOT, "put", "/r/a", "1")
    m.kill()
    m.start()
    wait_for(lambda: m.ctl(ROOT, "get", "/r/a").ok, 20, "the restarted member to serve root")
    assert m.ctl_ok(ALICE, "get", "/r/a", "--print-value-only").out == "1\n"
    assert err(m.ctl(ALICE, "put", "/r/a", "2")) == DENIED
    assert err(m.ctl("get", "/r/a")) == USER_EMPTY
    assert err(m.ctl("--user=alice:wrong", "get", "/r/a")) == AUTH_FAILED


@pytest.mark.long
def test_member_restored_from_a_raft_snapshot_has_the_users(make_cluster):
    # The users are made while a member is down and the log is compacted
    # past them (more than etcd's 5000 kept entries): it learns them only
    # from the snapshot it is sent.
    c = make_cluster(3, extra_flags={"snapshot-count": 100})
    leader = c.leader()
    lag = next(x for x in c.members if x is not leader)
    leader.ctl_ok("put", "/r/a", "1")
    wait_for(lambda: lag.ctl_ok("get", "/r/a", "--consistency=s").out != "", 10, "the write on the lagger")
    lag.kill()
    setup_users(leader, enable=False)
    pipelined_puts(leader, [(f"/fill/{i % 100:03d}", f"v{i}") for i in range(6000)])
    leader.ctl_ok("auth", "enable")
    lag.start()
    # Authenticate checks the password against the lagger's own users.
    wait_for(lambda: lag.ctl(ALICE, "get", "/r/a", "--consistency=s", "--print-value-only").out == "1\n",
             60, "alice to read on the member restored from a snapshot")
    assert err(lag.ctl(ALICE, "put", "/r/a", "2")) == DENIED
    assert err(lag.ctl("get", "/r/a", "--consistency=s")) == USER_EMPTY
    if c.target == "keel":  # it did catch up through a snapshot
        assert "restored the store from a received database snapshot" in lag.log_since_last_start()


def test_gateway_authorization_header(make_cluster):
    m = make_cluster(1)[0]
    setup_users(m)
    m.ctl_ok(ROOT, "put", "/r/a", "1")
    r = post(m, "/v3/auth/authenticate", {"name": "alice", "password": "alicepw"})
    assert r.status == 200, r
    token = r.json()["token"]
    hdr = {"Authorization": token}
    r = post(m, "/v3/kv/range", {"key": b64("/r/a")}, headers=hdr)
    assert r.status == 200 and r.json()["kvs"][0]["value"] == b64("1"), r
    r = post(m, "/v3/kv/put", {"key": b64("/r/a"), "value": b64("x")}, headers=hdr)
    assert r.status == 403 and r.json()["message"] == DENIED, r
    r = post(m, "/v3/kv/range", {"key": b64("/r/a")})
    assert r.status == 400 and r.json()["message"] == USER_EMPTY, r
    r = post(m, "/v3/kv/range", {"key": b64("/r/a")}, headers={"Authorization": "bogus.1"})
    assert r.status == 401 and r.json()["message"] == "etcdserver: invalid auth token", r
    r = post(m, "/v3/auth/authenticate", {"name": "alice", "password": "nope"})
    assert r.status == 400 and r.json()["message"] == AUTH_FAILED, r


def test_client_certificate_common_name_is_the_user(make_cluster, certs):  # noqa: F811
    flags = {"cert-file": certs / "m0.crt", "key-file": certs / "m0.key",
             "trusted-ca-file": certs / "ca.crt", "client-cert-auth": True}
    m = make_cluster(1, client_scheme="https", extra_flags=flags,
                     ctl_args=ctl_as(certs, "root"))[0]
    setup_users(m)
    m.ctl_ok("put", "/r/a", "1")  # as CN=root: no password needed
    alice = ctl_as(certs, "alice")
    assert etcdctl(m.endpoint, *alice, "get", "/r/a", "--print-value-only").out == "1\n"
    assert err(etcdctl(m.endpoint, *alice, "put", "/r/a", "2")) == DENIED
    # A certificate whose CN is no user gets nothing; a token wins over the CN.
    assert err(etcdctl(m.endpoint, *ctl_as(certs, "bob"), "get", "/r/a")) == DENIED
    etcdctl(m.endpoint, *alice, ROOT, "put", "/r/a", "2")  # root's token
    assert m.ctl_ok("get", "/r/a", "--print-value-only").out == "2\n"
    m.ctl_ok("user", "add", "bob:bobpw")
    m.ctl_ok("user", "grant-role", "bob", "reader")
    assert etcdctl(m.endpoint, *ctl_as(certs, "bob"), "get", "/r/a",
                   "--print-value-only").out == "2\n"


@pytest.mark.keel_only(reason="etcd 3.4 keeps sending events to a watch whose permission was revoked")
def test_revoke_cancels_an_existing_watch(make_cluster):
    import os
    import queue
    import subprocess
    import threading

    from cluster import ETCDCTL_BIN
    m = make_cluster(1)[0]
    setup_users(m)
    env = dict(os.environ, ETCDCTL_API="3")
    p = subprocess.Popen([ETCDCTL_BIN, "--endpoints=" + m.endpoint, ALICE, "watch", "/r/", "--prefix"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in p.stdout], daemon=True).start()
    seen = []

    def saw(text):
        while True:
            try:
                seen.append(lines.get_nowait())
            except queue.Empty:
                return any(text in x for x in seen)

    try:
        # Puts until one shows up: the watch is then established.
        n = [0]

        def event_seen():
            n[0] += 1
            m.ctl_ok(ROOT, "put", "/r/k", str(n[0]))
            return saw("/r/k")

        wait_for(event_seen, 15, "alice's watch to see root's put")
        m.ctl_ok(ROOT, "user", "revoke-role", "alice", "reader")
        m.ctl_ok(ROOT, "put", "/r/secret", "s")
        # clientv3 closes the cancelled watch's channel (the reason is not
        # passed on for an established watch).
        wait_for(lambda: saw("watch is canceled by the server"), 15,
                 "the watch to be cancelled: " + repr(seen))
        assert p.wait(timeout=10) != 0
        assert not any("/r/secret" in x for x in seen), seen
    finally:
        p.kill()
        p.wait()
