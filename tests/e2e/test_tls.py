"""TLS on the client and peer URLs, with etcd's flags: mutual TLS with etcdctl
and python3-etcd3, a revoked client certificate refused, a peer without a
valid certificate kept out of the cluster, auto TLS, --cipher-suites.

Certificates are generated per run by tests/tls/make_certs.sh (openssl)."""

import subprocess
from pathlib import Path

import pytest

from cluster import etcdctl, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([str(ROOT / "tests/tls/make_certs.sh"), str(d)], check=True)
    return d


def client_tls_flags(certs: Path, **extra) -> dict:
    flags = {"cert-file": certs / "m0.crt", "key-file": certs / "m0.key",
             "trusted-ca-file": certs / "ca.crt", "client-cert-auth": True}
    flags.update(extra)
    return flags


def ctl_as(certs: Path, name: str | None) -> list[str]:
    """etcdctl TLS options: trust the test CA, present <name>'s certificate."""
    args = [f"--cacert={certs / 'ca.crt'}"]
    if name:
        args += [f"--cert={certs / (name + '.crt')}", f"--key={certs / (name + '.key')}"]
    return args


def test_client_mutual_tls(make_cluster, certs):
    c = make_cluster(1, client_scheme="https", extra_flags=client_tls_flags(certs),
                     ctl_args=ctl_as(certs, "client"),
                     client_kw={"ca_cert": str(certs / "ca.crt"),
                                "cert_cert": str(certs / "client.crt"),
                                "cert_key": str(certs / "client.key")})
    m = c[0]
    m.ctl_ok("put", "k", "v")
    assert m.ctl_ok("get", "k", "--print-value-only").out == "v\n"
    # python3-etcd3 over mutual TLS
    cli = m.client()
    try:
        cli.put("k2", "v2")
        assert cli.get("k2")[0] == b"v2"
    finally:
        cli.close()
    # No client certificate, one from another CA, or plaintext: refused.
    for args in (ctl_as(certs, None),
                 [f"--cacert={certs / 'ca.crt'}", f"--cert={certs / 'rogue.crt'}",
                  f"--key={certs / 'rogue.key'}"],
                 []):
        r = etcdctl(m.endpoint, *args, "get", "k", command_timeout="2s")
        assert not r.ok, repr(r)
    # The client must check the server: a client trusting another CA fails.
    r = etcdctl(m.endpoint, f"--cacert={certs / 'rogue-ca.crt'}",
                f"--cert={certs / 'client.crt'}", f"--key={certs / 'client.key'}",
                "get", "k", command_timeout="2s")
    assert not r.ok, repr(r)


def test_revoked_client_certificate_is_refused(make_cluster, certs):
    c = make_cluster(1, client_scheme="https",
                     extra_flags=client_tls_flags(certs, **{"client-crl-file": certs / "crl.pem"}),
                     ctl_args=ctl_as(certs, "client"))
    m = c[0]
    m.ctl_ok("put", "k", "v")
    r = etcdctl(m.endpoint, *ctl_as(certs, "revoked"), "get", "k", command_timeout="2s")
    assert not r.ok, repr(r)


def test_https_and_http_side_by_side(make_cluster, certs):
    # TLS without client certificates on one port, plaintext on another.
    c = make_cluster(1, client_scheme="https", ctl_args=ctl_as(certs, None),
                     extra_flags={"cert-file": certs / "m0.crt", "key-file": certs / "m0.key"},
                     start=False)
    m = c[0]
    from cluster import free_port
    http_port = free_port()
    c.extra_flags["listen-client-urls"] = f"{m.client_url},http://127.0.0.1:{http_port}"
    c.start()
    m.ctl_ok("put", "k", "over-tls")
    r = etcdctl(f"127.0.0.1:{http_port}", "get", "k", "--print-value-only")
    assert r.ok and r.out == "over-tls\n", repr(r)


def test_peer_mutual_tls_cluster(make_cluster, certs):
    def flags(member):
        return {"peer-cert-file": certs / f"{member.name}.crt",
                "peer-key-file": certs / f"{member.name}.key",
                "peer-trusted-ca-file": certs / "ca.crt",
                "peer-client-cert-auth": True,
                "peer-crl-file": certs / "crl.pem"}
    c = make_cluster(3, peer_scheme="https", member_flags=flags)
    c[0].ctl_ok("put", "k", "replicated")
    for m in c.members:
        wait_for(lambda: m.ctl("get", "k", "--print-value-only", "--consistency=s").out == "replicated\n",
                 10, f"{m.name} to have the key")


def test_peer_without_valid_certificate_cannot_join(make_cluster, certs):
    # m2 presents a certificate from another CA: the others refuse it (and it
    # cannot verify theirs either); m0 and m1 form the cluster without it.
    def flags(member):
        name = "rogue" if member.name == "m2" else member.name
        return {"peer-cert-file": certs / f"{name}.crt",
                "peer-key-file": certs / f"{name}.key",
                "peer-trusted-ca-file": certs / "ca.crt",
                "peer-client-cert-auth": True}
    c = make_cluster(3, peer_scheme="https", member_flags=flags, start=False)
    for m in c.members:
        m.start()
    c[0].wait_healthy(30)
    c[1].wait_healthy(30)
    c[0].ctl_ok("put", "k", "v")
    assert c[1].ctl_ok("get", "k", "--print-value-only", "--consistency=s").out == "v\n"
    # m2 never hears from a leader: it has no data and no leader.
    r = c[2].ctl("get", "k", "--consistency=s", "--print-value-only", command_timeout="2s")
    assert r.out == "", repr(r)
    s = c[2].ctl("endpoint", "status", "-w", "json", command_timeout="2s")
    assert not s.ok or s.json()[0]["Status"].get("leader", 0) == 0, repr(s)


def test_auto_tls(make_cluster, certs):
    c = make_cluster(1, client_scheme="https", peer_scheme="https",
                     extra_flags={"auto-tls": True, "peer-auto-tls": True},
                     ctl_args=["--insecure-skip-tls-verify", "--insecure-transport=false"])
    m = c[0]
    m.ctl_ok("put", "k", "v")
    assert m.ctl_ok("get", "k", "--print-value-only").out == "v\n"
    for side in ("client", "peer"):
        for f in ("cert.pem", "key.pem"):
            assert (m.data_dir / "fixtures" / side / f).exists()


def test_cipher_suites(make_cluster, certs):
    c = make_cluster(1, client_scheme="https", ctl_args=ctl_as(certs, None),
                     extra_flags={"cert-file": certs / "m0.crt", "key-file": certs / "m0.key",
                                  "cipher-suites": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"})
    m = c[0]
    m.ctl_ok("put", "k", "v")

    def handshake(cipher: str) -> bool:
        p = subprocess.run(["openssl", "s_client", "-connect", m.endpoint, "-tls1_2",
                            "-cipher", cipher, "-CAfile", str(certs / "ca.crt")],
                           input="", capture_output=True, text=True, timeout=10)
        # gRPC may close without close_notify (openssl then exits non-zero):
        # the negotiated cipher is what counts.
        return f"Cipher is {cipher}" in p.stdout
    assert handshake("ECDHE-ECDSA-AES128-GCM-SHA256")
    assert not handshake("ECDHE-ECDSA-AES256-GCM-SHA384")


def test_bad_cipher_suite_is_refused(make_cluster, certs):
    c = make_cluster(1, extra_flags={"cipher-suites": "TLS_NOT_A_SUITE"}, start=False)
    m = c[0]
    m.start()
    assert m.wait_exit(20) != 0
    assert 'unexpected TLS cipher suite "TLS_NOT_A_SUITE"' in m.log()
