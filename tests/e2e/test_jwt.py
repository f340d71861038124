"""JWT auth tokens (--auth-token jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...).

- Interop: a token etcd mints verifies in keel's JWT module (tests/server/jwt_tool)
  with the same public key, and a token keel's module mints is accepted by etcd,
  for each key family (RSA PKCS#1 v1.5, RSA-PSS, ECDSA, HMAC).
- On both targets: etcdctl --user works with JWT tokens, a token stops working
  after its ttl, a pub-key-only member verifies tokens but cannot mint them, and
  a missing key file stops the member with a message naming it.

Keys are generated per test with `openssl genpkey` (never committed).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from etcd3 import etcdrpc

import cluster as cl

ROOT_PW = "rootpw"


def jwt_tool() -> str:
    # build/src/cmd/keel -> build/tests/server/jwt_tool
    path = Path(cl.keel_bin()).resolve().parents[2] / "tests" / "server" / "jwt_tool"
    if not path.exists():
        pytest.fail(f"no {path}: build the jwt_tool target", pytrace=False)
    return str(path)


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([jwt_tool(), *args], capture_output=True, text=True, timeout=30)


def make_keys(d: Path, method: str, name: str = "k") -> tuple[str, str]:
    """(private key file, public key file) for `method`; HMAC: (secret, "")."""
    d.mkdir(parents=True, exist_ok=True)
    priv, pub = d / f"{name}.key", d / f"{name}.pub"
    if method.startswith("HS"):
        priv.write_bytes(subprocess.run(["openssl", "rand", "-hex", "32"], check=True,
                                        capture_output=True).stdout)
        return str(priv), ""
    if method[:2] in ("RS", "PS"):
        gen = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
    else:
        curve = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[method]
        gen = ["-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}"]
    subprocess.run(["openssl", "genpkey", *gen, "-out", str(priv)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(priv), "-pubout", "-out", str(pub)],
                   check=True, capture_output=True)
    return str(priv), str(pub)


def auth_token_flag(method: str, priv: str = "", pub: str = "", ttl: str = "") -> str:
    parts = ["jwt"]
    if pub:
        parts.append(f"pub-key={pub}")
    if priv:
        parts.append(f"priv-key={priv}")
    parts.append(f"sign-method={method}")
    if ttl:
        parts.append(f"ttl={ttl}")
    return ",".join(parts)


def enable_auth(m: cl.Member) -> None:
    m.ctl_ok("user", "add", f"root:{ROOT_PW}")
    m.ctl_ok("auth", "enable")


def channel(m: cl.Member) -> grpc.Channel:
    return grpc.insecure_channel(m.endpoint)


def authenticate(ch: grpc.Channel, user: str = "root", password: str = ROOT_PW) -> str:
    req = etcdrpc.AuthenticateRequest(name=user, password=password)
    return etcdrpc.AuthStub(ch).Authenticate(req, timeout=10).token


def put_with(ch: grpc.Channel, token: str, key: bytes, value: bytes) -> int:
    req = etcdrpc.PutRequest(key=key, value=value)
    return etcdrpc.KVStub(ch).Put(req, metadata=(("token", token),), timeout=10).header.revision


def range_with(ch: grpc.Channel, token: str, key: bytes) -> int:
    resp = etcdrpc.KVStub(ch).Range(etcdrpc.RangeRequest(key=key),
                                    metadata=(("token", token),), timeout=10)
    return resp.count


def rpc_error(fn) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    raise AssertionError("the call succeeded")


def segment(token: str, i: int) -> dict:
    s = token.split(".")[i]
    return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))


INVALID = (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")


@pytest.fixture
def auth_service(target, shared1):
    """Skips the keel target while keel serves no Auth service (being added
    under issue 9 on its own branch); on etcd, and on keel once the service is
    there, the test runs."""
    if target == "keel":
        r = shared1[0].ctl("user", "list")
        if not r.ok and "code = Unimplemented" in r.err:
            pytest.skip("keel has no Auth service yet (etcdctl user list: Unimplemented)")


@pytest.mark.parametrize("method", ["RS256", "PS384", "ES256", "ES512", "HS256"])
def test_etcd_and_keel_tokens_verify_in_each_other(method, tmp_path):
    """Runs real etcd whatever the target: the reference for keel's module."""
    priv, pub = make_keys(tmp_path / "keys", method)
    other_priv, other_pub = make_keys(tmp_path / "keys", method, "other")
    c = cl.Cluster("etcd", tmp_path / "etcd", 1,
                   extra_flags={"auth-token": auth_token_flag(method, priv, pub, "1m")})
    try:
        c.start()
        m = c[0]
        enable_auth(m)
        with channel(m) as ch:
            token = authenticate(ch)
            assert segment(token, 0) == {"alg": method, "typ": "JWT"}
            claims = segment(token, 1)
            assert sorted(claims) == ["exp", "revision", "username"]
            rev = claims["revision"]

            # etcd's token verifies in keel's module, with the public key only
            # (HMAC: the shared secret).
            verify_opts = f"sign-method={method}," + (f"pub-key={pub}" if pub else f"priv-key={priv}")
            r = run_tool("verify", verify_opts, token)
            assert r.returncode == 0, r.stderr
            assert r.stdout.split() == ["root", str(rev)]
            # ... and not with another key.
            wrong_opts = f"sign-method={method}," + (f"pub-key={other_pub}" if other_pub
                                                     else f"priv-key={other_priv}")
            r = run_tool("verify", wrong_opts, token)
            assert r.returncode == 1 and "signature is invalid" in r.stderr, r

            # keel's token is accepted by etcd...
            r = run_tool("sign", f"sign-method={method},priv-key={priv},ttl=1m", "root", str(rev))
            assert r.returncode == 0, r.stderr
            keel_token = r.stdout.strip()
            assert put_with(ch, keel_token, b"/jwt/interop", method.encode()) > 0
            assert range_with(ch, keel_token, b"/jwt/interop") == 1
            # ... unless forged: signed with another key, or its claims changed.
            r = run_tool("sign", f"sign-method={method},priv-key={other_priv},ttl=1m", "root", str(rev))
            assert r.returncode == 0, r.stderr
            assert rpc_error(lambda: range_with(ch, r.stdout.strip(), b"/jwt/interop")) == INVALID
            h, _, sig = keel_token.split(".")
            forged_claims = base64.urlsafe_b64encode(
                json.dumps({"exp": 2**40, "revision": rev, "username": "root"},
                           separators=(",", ":")).encode()).rstrip(b"=").decode()
            forged = f"{h}.{forged_claims}.{sig}"
            assert rpc_error(lambda: range_with(ch, forged, b"/jwt/interop")) == INVALID
    finally:
        c.stop()
        cl.forget_cluster(c)


def test_jwt_tokens_with_etcdctl_and_expiry(make_cluster, tmp_path, auth_service):
    priv, pub = make_keys(tmp_path / "keys", "RS256")
    ttl_s = 2
    c = make_cluster(1, extra_flags={"auth-token": auth_token_flag("RS256", priv, pub, f"{ttl_s}s")})
    m = c[0]
    enable_auth(m)

    m.ctl_ok("--user", f"root:{ROOT_PW}", "put", "/jwt/k", "v1")
    got = m.ctl_ok("--user", f"root:{ROOT_PW}", "get", "/jwt/k", "--print-value-only")
    assert got.out.strip() == "v1"
    bad = m.ctl("--user", "root:wrong", "get", "/jwt/k")
    assert not bad.ok
    assert bad.error_line().endswith("etcdserver: authentication failed, invalid user ID or password"), bad

    with channel(m) as ch:
        minted_at = time.time()
        token = authenticate(ch)
        assert segment(token, 0) == {"alg": "RS256", "typ": "JWT"}
        claims = segment(token, 1)
        assert claims["username"] == "root"
        assert minted_at - 1 <= claims["exp"] - ttl_s <= time.time()
        r = run_tool("verify", f"sign-method=RS256,pub-key={pub}", token)
        assert r.returncode == 0, r.stderr

        assert range_with(ch, token, b"/jwt/k") == 1
        # The token stops working once its ttl has passed (and not before the
        # exp it carries).
        code_msg = cl.wait_for(lambda: rpc_error(lambda: range_with(ch, token, b"/jwt/k")),
                               timeout=ttl_s + 10, what="the JWT token to expire")
        assert code_msg == INVALID
        assert time.time() >= claims["exp"]
        # A fresh token works again.
        assert range_with(ch, authenticate(ch), b"/jwt/k") == 1


def test_jwt_token_from_one_member_works_on_every_member(make_cluster, tmp_path, auth_service):
    """JWT tokens need no shared state: each member checks the signature."""
    priv, pub = make_keys(tmp_path / "keys", "ES256")
    c = make_cluster(3, extra_flags={"auth-token": auth_token_flag("ES256", priv, pub, "1m")})
    enable_auth(c[0])
    with channel(c[1]) as ch1:
        token = authenticate(ch1)
    for i, m in enumerate(c.members):
        with channel(m) as ch:
            assert put_with(ch, token, f"/jwt/every/{i}".encode(), b"v") > 0
    for m in c.members:
        with channel(m) as ch:
            resp = etcdrpc.KVStub(ch).Range(
                etcdrpc.RangeRequest(key=b"/jwt/every/", range_end=b"/jwt/every0"),
                metadata=(("token", token),), timeout=10)
            assert [kv.key for kv in resp.kvs] == [f"/jwt/every/{i}".encode() for i in range(3)]
    out = c[2].ctl_ok("--user", f"root:{ROOT_PW}", "get", "/jwt/every/0", "--print-value-only")
    assert out.out.strip() == "v"


def test_jwt_pub_key_only_member_verifies_but_cannot_sign(make_cluster, tmp_path, auth_service):
    priv, pub = make_keys(tmp_path / "keys", "ES256")
    other_priv, _ = make_keys(tmp_path / "keys", "ES256", "other")
    c = make_cluster(1, extra_flags={"auth-token": auth_token_flag("ES256", pub=pub)})
    m = c[0]
    enable_auth(m)
    with channel(m) as ch:
        code, msg = rpc_error(lambda: authenticate(ch))
        assert (code, msg) == (grpc.StatusCode.UNKNOWN,
                               "auth: token signing attempted with verify-only key")
        # A token minted elsewhere with the private key is accepted (its auth
        # revision must not be older than the member's).
        r = run_tool("sign", f"sign-method=ES256,priv-key={priv},ttl=1m", "root", "1000")
        assert r.returncode == 0, r.stderr
        assert put_with(ch, r.stdout.strip(), b"/jwt/vo", b"x") > 0
        r = run_tool("sign", f"sign-method=ES256,priv-key={other_priv},ttl=1m", "root", "1000")
        assert rpc_error(lambda: put_with(ch, r.stdout.strip(), b"/jwt/vo", b"y")) == INVALID


def test_jwt_missing_key_file_stops_the_member(make_cluster, tmp_path, auth_service):
    missing = tmp_path / "no-such.pub"
    c = make_cluster(1, start=False,
                     extra_flags={"auth-token": auth_token_flag("RS256", pub=str(missing))})
    m = c[0]
    m.start()
    assert m.wait_exit(timeout=20) != 0
    assert str(missing) in m.log_since_last_start()
