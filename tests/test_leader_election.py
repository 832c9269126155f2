"""Replicas of ``gitsync run --leader-elect`` against one repo and one real API server.

Everything is real: ``gitsync run`` processes, the session's kube-apiserver (and, for
the outage, a private one this test pauses with SIGSTOP), a local git remote. Lease
timings are short (3 s lease, 2 s renew deadline, 0.5 s retry) so that a hand-over
takes seconds; the defaults are client-go's 15/10/2.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gitsync.clients.kube import KubeClient
from gitsync.dev import controlplane
from gitsync.dev.controlplane import Component, ControlPlane

from .conftest import crds_root, daemon_argv
from .specrepo import SpecRepo, git
from .test_reconcile import model as spec
from .test_service import SECRET, free_port

LEASE = ("coordination.k8s.io/v1", "Lease")
ISVC = ("serving.kserve.io/v1beta1", "InferenceService")
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 3, 2.0, 0.5
#: The longest a standby can take to notice a dead leader's lease ran out: the lease
#: duration after it last saw a renewal, plus its jittered retry (client-go's 1.2).
EXPIRY = LEASE_DURATION + RETRY_PERIOD * 2.2
#: A cycle's own time on 2 shared cores: fetch, render, apply, push.
CYCLE = 3.0
STATUS = "gitsync/status"


def model(name: str, namespace: str, version: int) -> str:
    return spec(name, namespace, f"s3://models/{name}/v{version}")


class Replica:
    """One ``gitsync run --leader-elect`` process and its JSON log."""

    def __init__(self, argv: list[str], log: Path, *, port: int | None = None) -> None:
        self.log = log
        #: Where its listener is, if it has one.
        self.port = port
        env = {**os.environ, "GITSYNC_WEBHOOK_SECRET": SECRET}
        with log.open("wb") as out:
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=out, env=env)

    def get(self, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port or 0, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        except OSError:
            return 0, b""
        finally:
            connection.close()

    def gauge(self, name: str) -> float | None:
        """A label-less sample of its /metrics, or None while it does not answer."""
        status, body = self.get("/metrics")
        if status != 200:
            return None
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and not sample.labels:
                    return float(sample.value)
        return None

    def push_hook(self, ref: str, *, secret: str = SECRET) -> int:
        """A GitHub push delivery for ``ref``, signed with ``secret``; the status."""
        body = orjson.dumps({"ref": ref, "after": "0" * 40})
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        connection = http.client.HTTPConnection("127.0.0.1", self.port or 0, timeout=5)
        try:
            connection.request(
                "POST",
                "/hooks/github",
                body=body,
                headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}"},
            )
            return connection.getresponse().status
        finally:
            connection.close()

    def events(self) -> list[dict[str, Any]]:
        lines = self.log.read_bytes().splitlines()
        found = []
        for line in lines:
            try:
                found.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue  # a line being written
        return found

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event]

    @property
    def identity(self) -> str | None:
        started = self.named("leader election started")
        return str(started[0]["identity"]) if started else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=15)


def at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"])).timestamp()


def until(what: str, check: Callable[[], Any], timeout: float, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(step)
    return value


class Cluster:
    """The replicas of one instance, the Lease they share and what they serve."""

    def __init__(
        self, tmp: Path, kube: KubeClient, kubeconfig: Path, namespace: str, repo: SpecRepo
    ) -> None:
        self.tmp, self.kube, self.kubeconfig = tmp, kube, kubeconfig
        self.namespace, self.repo = namespace, repo
        self.instance = f"le-{uuid.uuid4().hex[:6]}"
        self.lease = f"gitsync-{self.instance}"
        self.replicas: list[Replica] = []

    def start(self, *, interval: float = 0.5, listen: bool = False) -> Replica:
        index = len(self.replicas)
        argv = daemon_argv(
            repo_url=self.repo.url,
            instance=self.instance,
            kubeconfig=self.kubeconfig,
            cache=self.tmp / f"cache-{index}",
            interval=interval,
            level="info",
        )
        port = free_port() if listen else None
        if port is not None:
            address = f"127.0.0.1:{port}"
            argv += ["--listen", address, "--advertise-url", f"http://{address}"]
        argv += [
            "--log-format",
            "json",
            "--leader-elect",
            "--lease-namespace",
            self.namespace,
            "--lease-duration",
            str(LEASE_DURATION),
            "--renew-deadline",
            str(RENEW_DEADLINE),
            "--retry-period",
            str(RETRY_PERIOD),
        ]
        replica = Replica(argv, self.tmp / f"replica-{index}.log", port=port)
        self.replicas.append(replica)
        until("its identity", lambda: replica.identity, 30)
        return replica

    def spec(self) -> dict[str, Any]:
        lease = self.kube.get(*LEASE, self.lease, namespace=self.namespace)
        return dict(lease["spec"]) if lease else {}

    def holder(self) -> str:
        return str(self.spec().get("holderIdentity") or "")

    def leader(self, timeout: float = 30) -> Replica:
        """The one running replica the Lease names."""

        def find() -> Replica | None:
            holder = self.holder()
            named = [r for r in self.running() if r.identity == holder]
            return named[0] if named else None

        found: Replica = until("a leader", find, timeout)
        return found

    def running(self) -> list[Replica]:
        return [r for r in self.replicas if r.process.poll() is None]

    def served(self, name: str) -> str | None:
        obj = self.kube.get(*ISVC, name, namespace=self.namespace)
        return None if obj is None else str(obj["spec"]["predictor"]["model"]["storageUri"])

    def reported(self, head: str) -> bool:
        """The status branch has a commit made for source ``head``."""
        try:
            subjects = git("log", "--format=%s", STATUS, cwd=self.repo.remote)
        except AssertionError:
            return False
        return f"[source {head[:7]}]" in subjects

    def push(self, version: int) -> str:
        """Commit model ``m`` at ``version``; the new head."""
        self.repo.write("m.yaml", model("m", self.namespace, version))
        return self.repo.commit(f"m v{version}")

    def live(self, version: int) -> bool:
        return self.served("m") == f"s3://models/m/v{version}"

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()


@pytest.fixture
def cluster(
    tmp_path: Path, control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> Iterator[Cluster]:
    repo = SpecRepo(tmp_path / "repo")
    repo.write("m.yaml", model("m", namespace, 1))
    repo.commit("m v1")
    group = Cluster(tmp_path, kube, control_plane.kubeconfig, namespace, repo)
    try:
        yield group
    finally:
        group.stop()


def assert_status_history_is_whole(cluster: Cluster, heads: list[str]) -> None:
    """No status commit lost (each head reported) or doubled (none repeats its parent's
    tree, and none is made twice for the same source and the same document)."""
    remote = cluster.repo.remote
    for head in heads:
        assert cluster.reported(head), f"no status commit for source {head[:7]}"
    commits = git("rev-list", "--first-parent", STATUS, cwd=remote).splitlines()
    seen: set[tuple[str, str]] = set()
    for commit in commits:
        parents = git("rev-list", "--parents", "-n1", commit, cwd=remote).split()[1:]
        if parents:
            assert git("rev-parse", f"{commit}^{{tree}}", cwd=remote) != git(
                "rev-parse", f"{parents[0]}^{{tree}}", cwd=remote
            ), f"status commit {commit[:7]} changes nothing"
        subject = git("log", "-1", "--format=%s", commit, cwd=remote)
        tree = git("rev-parse", f"{commit}^{{tree}}", cwd=remote)
        assert (subject, tree) not in seen, f"status commit doubled: {subject}"
        seen.add((subject, tree))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_one_of_three_leads_and_a_standby_takes_over_from_a_killed_leader(
    cluster: Cluster,
) -> None:
    for _ in range(3):
        cluster.start()
    leader = cluster.leader()
    until("v1 live", lambda: cluster.served("m") == "s3://models/m/v1", 30)
    heads = [git("rev-parse", "main", cwd=cluster.repo.remote)]
    until("v1 reported", lambda: cluster.reported(heads[0]), 30)

    # Exactly one holds the Lease; only it ran cycles; the standbys are idle and light.
    standbys = [r for r in cluster.running() if r is not leader]
    assert len(standbys) == 2
    assert sum(r.identity == cluster.holder() for r in cluster.running()) == 1
    assert leader.named("cycle finished")
    time.sleep(2)
    for standby in standbys:
        assert standby.named("cycle finished") == [], "a standby ran a cycle"
    rss = [rss_kib(r.process.pid) for r in standbys]
    print(
        f"\nidle standby RSS: {[round(k / 1024, 1) for k in rss]} MiB"
        f" (the leader, one model: {rss_kib(leader.process.pid) / 1024:.1f} MiB)"
    )

    hand_overs = []
    version = 1
    for _ in range(4):
        transitions = int(cluster.spec().get("leaseTransitions") or 0)
        version += 1
        leader.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        leader.process.wait(timeout=10)
        heads.append(cluster.push(version))
        until(f"v{version} live", lambda: cluster.live(version), EXPIRY + CYCLE + 10)  # noqa: B023
        hand_overs.append(time.monotonic() - killed)
        leader = cluster.leader()
        assert int(cluster.spec().get("leaseTransitions") or 0) == transitions + 1
        until(f"v{version} reported", lambda: cluster.reported(heads[-1]), 30)
        cluster.start()  # back to three replicas
    print(
        f"SIGKILL hand-over, kill to the next change live: median"
        f" {statistics.median(hand_overs):.2f} s of {[round(h, 2) for h in hand_overs]}"
        f" (lease {LEASE_DURATION} s, retry {RETRY_PERIOD} s)"
    )
    for took in hand_overs:
        assert took < EXPIRY + CYCLE
    # Only leaders ever ran cycles: every replica that logged a cycle had led.
    for replica in cluster.replicas:
        if replica.named("cycle finished"):
            assert replica.named("leading"), "a replica that never led ran a cycle"
    assert_status_history_is_whole(cluster, heads)


def test_sigterm_releases_the_lease_and_a_standby_takes_over_at_once(cluster: Cluster) -> None:
    cluster.start()
    cluster.leader()
    cluster.start()
    until("v1 live", lambda: cluster.served("m") == "s3://models/m/v1", 30)
    heads = [git("rev-parse", "main", cwd=cluster.repo.remote)]
    hand_overs = []
    for version in (2, 3, 4):
        leader = cluster.leader()
        until("the standby's first look", lambda: len(cluster.running()) == 2, 10)
        time.sleep(RETRY_PERIOD * 3)  # the standby has read the Lease as held
        leader.process.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        new = until(
            "a new holder",
            lambda: (holder := cluster.holder()) and holder != leader.identity and holder,  # noqa: B023
            LEASE_DURATION * 2,
        )
        hand_overs.append(time.monotonic() - asked)
        assert leader.process.wait(timeout=15) == 0
        assert leader.named("lease released")
        assert any(r.identity == new for r in cluster.running())
        heads.append(cluster.push(version))
        until(f"v{version} live", lambda: cluster.live(version), CYCLE + 10)  # noqa: B023
        until(f"v{version} reported", lambda: cluster.reported(heads[-1]), 30)
        cluster.start()
    print(
        f"\nSIGTERM hand-over, signal to the new holder in the Lease: median"
        f" {statistics.median(hand_overs):.2f} s of {[round(h, 2) for h in hand_overs]}"
        f" (lease {LEASE_DURATION} s, retry {RETRY_PERIOD} s)"
    )
    for took in hand_overs:
        # Released: no waiting out the lease, one jittered retry of the standby.
        assert took < LEASE_DURATION
    assert_status_history_is_whole(cluster, heads)


@pytest.fixture
def private_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane of this test's own, since it is paused."""
    folder = tmp_path / "plane"
    root = crds_root()
    plane = controlplane.up(folder, crd_dirs=[root / "kserve" / "full"])
    try:
        yield plane
    finally:
        pid = next(s.pid for s in controlplane.status(folder) if s.component is Component.APISERVER)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        controlplane.down(folder)


def test_a_paused_api_server_stops_the_leader_before_its_lease_expires(
    tmp_path: Path, private_plane: ControlPlane
) -> None:
    kube = KubeClient.from_kubeconfig(private_plane.kubeconfig)
    namespace = "paused"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    repo = SpecRepo(tmp_path / "repo")
    repo.write("m.yaml", model("m", namespace, 1))
    repo.commit("m v1")
    cluster = Cluster(tmp_path, kube, private_plane.kubeconfig, namespace, repo)
    apiserver = next(
        s.pid
        for s in controlplane.status(private_plane.folder)
        if s.component is Component.APISERVER
    )
    assert apiserver is not None
    try:
        first = cluster.start()
        assert cluster.leader() is first
        second = cluster.start()
        until("v1 live", lambda: cluster.served("m") == "s3://models/m/v1", 30)
        until(
            "v1 reported", lambda: cluster.reported(git("rev-parse", "main", cwd=repo.remote)), 30
        )
        time.sleep(RETRY_PERIOD * 3)  # the standby has read the Lease as held

        # Pause the API server right after a renewal, so that renewal's time is known.
        before = cluster.spec()["renewTime"]
        renewed = until(
            "a renewal", lambda: (t := cluster.spec()["renewTime"]) != before and t, 5, 0.01
        )
        os.kill(apiserver, signal.SIGSTOP)
        paused = time.time()
        head = cluster.push(2)  # while the API server is paused
        time.sleep(LEASE_DURATION + 3)
        os.kill(apiserver, signal.SIGCONT)
        resumed = time.time()

        until("v2 live", lambda: cluster.served("m") == "s3://models/m/v2", 60)
        assert cluster.leader() is second
        until("v2 reported", lambda: cluster.reported(head), 30)
        assert first.process.wait(timeout=60) == 2  # it exits, to restart as a standby
    finally:
        cluster.stop()
        kube.close()

    last_renewal = datetime.fromisoformat(renewed.replace("Z", "+00:00")).timestamp()
    (stopped,) = first.named("lease not renewed by the deadline: standing by")
    (took_over,) = [e for e in second.named("leading")]
    print(
        f"\nAPI server paused {resumed - paused:.1f} s: the leader stopped writing"
        f" {at(stopped) - last_renewal:.2f} s after its last renewal (renew deadline"
        f" {RENEW_DEADLINE} s, lease {LEASE_DURATION} s); the standby led"
        f" {at(took_over) - resumed:.2f} s after the server was back"
    )
    assert at(stopped) - last_renewal < LEASE_DURATION
    assert at(stopped) < at(took_over)
    assert at(took_over) >= paused + LEASE_DURATION
    # The old leader wrote nothing from the pause on: what it tried was refused.
    for event in first.events():
        if event.get("event") == "object configured":
            assert at(event) < paused, event
    assert_status_history_is_whole(cluster, [head])


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        pytest.param(
            ["--lease-namespace", "ns", "--lease-duration", "3", "--renew-deadline", "5"],
            "--lease-duration 3 must be greater than --renew-deadline 5",
            id="renew-deadline-past-the-lease",
        ),
        pytest.param(
            ["--lease-namespace", "ns", "--renew-deadline", "2", "--retry-period", "2"],
            "--renew-deadline 2.0 must be greater than 1.2 x --retry-period 2.0",
            id="no-second-try",
        ),
        pytest.param(
            ["--serviceaccount-dir", "/nonexistent"],
            "--leader-elect needs --lease-namespace (no /nonexistent/namespace)",
            id="no-namespace",
        ),
    ],
)
def test_unusable_election_settings_are_refused_before_anything_runs(
    tmp_path: Path, flags: list[str], says: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gitsync", "run", "--repo", str(tmp_path), "--leader-elect", *flags],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert says in result.stderr


def test_two_listening_replicas_one_leads_a_hook_applies_at_once_and_a_kill_hands_over(
    cluster: Cluster,
) -> None:
    """Issue 12's acceptance: two replicas with --leader-elect and --listen, polling only
    every 300 s, so only a push hook or a hand-over can make them apply."""
    first = cluster.start(interval=300, listen=True)
    cluster.leader()
    second = cluster.start(interval=300, listen=True)
    leader = cluster.leader()
    standby = second if leader is first else first
    until("v1 live", lambda: cluster.live(1), 30)
    heads = [git("rev-parse", "main", cwd=cluster.repo.remote)]
    until("v1 reported", lambda: cluster.reported(heads[0]), 30)

    # Exactly one holds the Lease, and the gauges say which.
    until("the leader's gauge", lambda: leader.gauge("gitsync_leader") == 1.0, 10)
    assert standby.gauge("gitsync_leader") == 0.0
    assert standby.get("/readyz")[0] == 200, "a healthy standby is ready"
    assert standby.named("cycle finished") == []

    # A wrongly signed push changes nothing; a signed one applies the change at once.
    heads.append(cluster.push(2))
    cycles = len(leader.named("cycle finished"))
    assert leader.push_hook("refs/heads/main", secret="not-the-secret") == 401
    time.sleep(1.0)
    assert not cluster.live(2)
    assert len(leader.named("cycle finished")) == cycles
    # Sent to the standby, as a Service in front of both may do: it hands the hook to
    # the leader, at the URL the leader wrote on the Lease.
    sent = time.monotonic()
    assert standby.push_hook("refs/heads/main") == 202
    until("v2 live after the hook", lambda: cluster.live(2), 10, step=0.01)
    latency = time.monotonic() - sent
    print(f"\nsigned push hook to the standby, until live: {latency * 1000:.0f} ms")
    assert [e["forwarded"] for e in standby.named("webhook")] == [True]
    assert standby.named("cycle finished") == []
    # The issue asks for a second; the bound leaves room for a loaded CI machine.
    assert latency < 2.0
    until("v2 reported", lambda: cluster.reported(heads[-1]), 30)

    # SIGKILL the leader: the standby takes the Lease and applies the next change,
    # with no hook and no poll, within a lease duration (plus its retry and a cycle).
    heads.append(cluster.push(3))
    leader.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    leader.process.wait(timeout=10)
    until("v3 live after the hand-over", lambda: cluster.live(3), EXPIRY + CYCLE + 10)
    took = time.monotonic() - killed
    print(f"SIGKILL of the leader until the standby applied the next change: {took:.2f} s")
    assert took < EXPIRY + CYCLE
    assert cluster.leader() is standby
    until("the new leader's gauge", lambda: standby.gauge("gitsync_leader") == 1.0, 10)
    until("v3 reported", lambda: cluster.reported(heads[-1]), 30)
    assert_status_history_is_whole(cluster, heads)
