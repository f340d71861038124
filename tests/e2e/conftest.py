"""Fixtures of the end-to-end suite: every test runs against real etcd (the
reference) and keel, each started as real processes on loopback.

Environment:
  KEEL_E2E_TARGETS   comma-separated targets to run, default "etcd,keel"
  KEEL_BIN           the keel binary, default <repo>/build/src/cmd/keel
  KEEL_E2E_LONG=1    also run the slower scenarios (marked `long`)

Markers:
  keel_xfail(reason=...)  a known keel bug: strict xfail on the keel target only
                          (an unexpected pass fails, so fixed bugs get unmarked).
  keel_only(reason=...)   a keel extension etcd 3.4 lacks: runs on the keel target only.
  long                    a slow scenario, run only with KEEL_E2E_LONG=1.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cluster as cl  # noqa: E402

ALL_TARGETS = ("etcd", "keel")


def selected_targets() -> list[str]:
    raw = os.environ.get("KEEL_E2E_TARGETS", ",".join(ALL_TARGETS))
    targets = [t.strip() for t in raw.split(",") if t.strip()]
    for t in targets:
        if t not in ALL_TARGETS:
            raise pytest.UsageError(f"KEEL_E2E_TARGETS: unknown target {t!r} (use etcd, keel)")
    return targets


def long_enabled() -> bool:
    return os.environ.get("KEEL_E2E_LONG", "") not in ("", "0")


def pytest_configure(config):
    config.addinivalue_line("markers", "keel_xfail(reason): known keel failure; strict xfail on keel only")
    config.addinivalue_line("markers", "long: slow scenario, run only with KEEL_E2E_LONG=1")
    config.addinivalue_line("markers", "keel_only(reason): keel extension; skipped on etcd")


def pytest_collection_modifyitems(config, items):
    skip_long = pytest.mark.skip(reason="slow scenario: set KEEL_E2E_LONG=1")
    for item in items:
        if item.get_closest_marker("long") and not long_enabled():
            item.add_marker(skip_long)
        m = item.get_closest_marker("keel_xfail")
        cs = getattr(item, "callspec", None)
        only = item.get_closest_marker("keel_only")
        if only and cs is not None and cs.params.get("target") != "keel":
            item.add_marker(pytest.mark.skip(reason="keel extension: " + (only.kwargs.get("reason") or "")))
        if m and cs is not None and cs.params.get("target") == "keel":
            reason = m.kwargs.get("reason") or (m.args[0] if m.args else "known keel failure")
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


def _clusters_of(item) -> list:
    """The clusters a test used: its own (make_cluster) and the shared ones it asked for."""
    found = []
    for v in getattr(item, "funcargs", {}).values():
        if isinstance(v, ClusterFactory):
            found.extend(v.clusters)
        elif isinstance(v, cl.Cluster):
            found.append(v)
        elif isinstance(v, cl.Member):
            found.append(v.cluster)
    out = []
    for c in found:
        if c not in out and any(m.starts for m in c.members):
            out.append(c)
    return out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed or (rep.when == "call" and hasattr(rep, "wasxfail")):
        # A failure (or an expected keel failure): attach the members' logs.
        for c in _clusters_of(item) or cl.live_clusters():
            rep.sections.append((f"server logs ({c.target}, {c.base.name})", c.logs()))


# Session scope groups the tests by target, so shared clusters start once per target.
@pytest.fixture(scope="session", params=selected_targets())
def target(request):
    t = request.param
    binary = cl.server_bin(t)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(f"{t}: no executable at {binary} (set KEEL_BIN / build keel)", pytrace=False)
    if not os.access(cl.ETCDCTL_BIN, os.X_OK):
        pytest.fail(f"no etcdctl at {cl.ETCDCTL_BIN} (apt-get install etcd-client)", pytrace=False)
    return t


# target -> why its first cluster could not start: later clusters of a target
# whose 1-member cluster cannot start fail at once instead of timing out again.
_broken: dict[str, str] = {}


class ClusterFactory:
    """Makes clusters for one test (or module) and kills them all at the end."""

    def __init__(self, target: str, base: Path):
        self.target = target
        self.base = base
        self.clusters: list[cl.Cluster] = []

    def __call__(self, size: int = 1, *, start: bool = True, name: str | None = None, **kw) -> cl.Cluster:
        name = name or f"c{len(self.clusters)}-{size}"
        c = cl.Cluster(self.target, self.base / name, size, **kw)
        self.clusters.append(c)
        if start:
            if self.target in _broken:
                pytest.fail(f"{self.target} could not start a cluster earlier in this run: "
                            f"{_broken[self.target]}", pytrace=False)
            try:
                c.start()
            except cl.ProcessExited as e:
                if size == 1 and not kw.get("extra_flags") and not kw.get("member_flags"):
                    _broken[self.target] = str(e).splitlines()[0]
                raise
        return c

    def close(self, keep_data: bool = True) -> None:
        """Kills every member; drops the data dirs (WAL segments are preallocated,
        64 MiB each) unless keep_data. Logs always stay."""
        for c in self.clusters:
            try:
                c.stop()
            finally:
                cl.forget_cluster(c)
            if not keep_data:
                for m in c.members:
                    shutil.rmtree(m.data_dir, ignore_errors=True)


def _passed(item) -> bool:
    """No failure in setup or call (an expected keel failure counts as none)."""
    return not any(getattr(item, "rep_" + w, None) is not None and getattr(item, "rep_" + w).failed
                   for w in ("setup", "call"))


@pytest.fixture
def make_cluster(target, tmp_path, request):
    f = ClusterFactory(target, tmp_path)
    try:
        yield f
    finally:
        f.close(keep_data=not _passed(request.node))


@pytest.fixture(scope="session")
def _shared_factory(target, tmp_path_factory, request):
    f = ClusterFactory(target, tmp_path_factory.mktemp(f"{target}-shared"))
    failed_before = request.session.testsfailed
    try:
        yield f
    finally:
        f.close(keep_data=request.session.testsfailed > failed_before)


@pytest.fixture(scope="session")
def shared1(_shared_factory):
    """A 1-member cluster shared by the tests of a target (use distinct keys; never
    compact beyond the current revision, nor kill it)."""
    return _shared_factory(1, name="shared1")


@pytest.fixture(scope="session")
def shared3(_shared_factory):
    """A 3-member cluster shared by the tests of a target (same rules as shared1)."""
    return _shared_factory(3, name="shared3")


@pytest.fixture
def member(shared1):
    m = shared1[0]
    assert m.running(), f"shared member {m.name} is not running:\n{shared1.logs()}"
    yield m
    # A lease a test leaves behind expires later, in some other test, and its
    # keys' deletion moves the revision that test counts on: revoke them now.
    if m.running():
        listed = m.ctl("lease", "list", "-w", "json")
        for lease in (listed.json().get("leases") or []) if listed.ok else []:
            m.ctl("lease", "revoke", format(int(lease["id"]), "x"))


@pytest.fixture
def uniq(request):
    """A key prefix unique to this test (tests share clusters)."""
    name = request.node.name
    for ch in "[]/ ,":
        name = name.replace(ch, "_")
    return f"/{name}/"
