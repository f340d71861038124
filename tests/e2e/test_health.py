"""/health and /version as etcd 3.4 answers them, /livez and /readyz as etcd 3.6 does
(keel only): healthy needs a leader, no alarm and a read through consensus."""

from __future__ import annotations

import pytest

from cluster import wait_for
from httpc import post, post_ok, request

HEALTHY = (200, {"health": "true"})
UNHEALTHY = (503, {"health": "false"})


def health(m, query: str = "") -> tuple[int, dict]:
    r = request(m, "GET", "/health" + query)
    assert r.headers["content-type"] == "text/plain; charset=utf-8", r
    return r.status, r.json()


def test_health_and_version(member, target):
    assert health(member) == HEALTHY
    r = request(member, "POST", "/health")
    assert (r.status, r.text, r.headers.get("allow")) == (405, "Method Not Allowed\n", "GET")
    r = request(member, "GET", "/version")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    v = r.json()
    assert set(v) == {"etcdserver", "etcdcluster"}
    # keel reports the etcd API level it implements, as in Maintenance.Status
    assert v == ({"etcdserver": "3.4.23", "etcdcluster": "3.4.0"} if target == "etcd"
                 else {"etcdserver": "3.5.0", "etcdcluster": "3.5.0"})
    assert v["etcdserver"] == post_ok(member, "/v3/maintenance/status")["version"]


def set_alarm(m, action: str) -> dict:
    mid = post_ok(m, "/v3/maintenance/status")["header"]["member_id"]
    return post_ok(m, "/v3/maintenance/alarm",
                   {"action": action, "memberID": mid, "alarm": "NOSPACE"})


def test_health_with_nospace_alarm(make_cluster, target):
    m = make_cluster(1)[0]
    assert health(m) == HEALTHY
    a = set_alarm(m, "ACTIVATE")
    assert [x["alarm"] for x in a["alarms"]] == ["NOSPACE"]
    assert health(m) == UNHEALTHY
    if target == "keel":  # etcd 3.5's ?exclude, which 3.4 ignores
        assert health(m, "?exclude=NOSPACE") == HEALTHY
        assert request(m, "GET", "/readyz").status == 200  # NOSPACE: still serves reads
    set_alarm(m, "DEACTIVATE")
    assert health(m) == HEALTHY


def test_health_without_quorum(make_cluster):
    c = make_cluster(3)
    c.wait_leader(10)
    survivor, others = c[0], [c[1], c[2]]
    assert health(survivor) == HEALTHY
    for m in others:
        m.kill()
    wait_for(lambda: health(survivor) == UNHEALTHY, 20, "/health to report the lost quorum")
    for m in others:
        m.start()
    wait_for(lambda: health(survivor) == HEALTHY, 30, "/health to recover with the quorum")


@pytest.mark.keel_only(reason="/livez and /readyz are etcd 3.6's")
def test_livez_readyz(make_cluster):
    c = make_cluster(3)
    c.wait_leader(10)
    m = c[0]
    r = request(m, "GET", "/livez")
    assert (r.status, r.text) == (200, "ok")
    r = request(m, "GET", "/readyz?verbose")
    assert r.status == 200
    assert r.text == ("[+]data_corruption ok\n[+]serializable_read ok\n"
                      "[+]linearizable_read ok\nreadyz check passed\n")
    c[1].kill()
    c[2].kill()
    # without quorum: alive (it reads its own store) but not ready
    wait_for(lambda: request(m, "GET", "/readyz").status == 503, 20, "/readyz to fail")
    r = request(m, "GET", "/readyz")
    assert "[-]linearizable_read failed" in r.text and r.text.endswith("readyz check failed\n")
    assert request(m, "GET", "/livez").status == 200
    r = request(m, "GET", "/readyz?exclude=linearizable_read")
    assert (r.status, r.text) == (200, "ok")
    assert request(m, "POST", "/livez").status == 405
