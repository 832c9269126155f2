"""The election loop against the real API server, one round at a time, on fake clocks.

Each elector has its own monotonic clock, advanced by the test, so a lease expiring
or a renew deadline passing is a step of the test and not a sleep; the Lease, its
resourceVersion and the 409s are the API server's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.election import LeaderElector
from gitsync.errors import ApiConflictError
from gitsync.leader import LEASE_API, Action, Timings

TIMINGS = Timings(lease_duration=15, renew_deadline=10.0, retry_period=2.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lease_client(control_plane: ControlPlane) -> Iterator[KubeClient]:
    client = KubeClient.from_kubeconfig(control_plane.kubeconfig, concurrency=1)
    yield client
    client.close()


def elector(kube: KubeClient, namespace: str, name: str, clock: Clock) -> LeaderElector:
    return LeaderElector(
        kube, namespace=namespace, name="gitsync-test", identity=name, timings=TIMINGS, clock=clock
    )


def lease(kube: KubeClient, namespace: str) -> dict[str, object]:
    found = kube.get(LEASE_API, "Lease", "gitsync-test", namespace=namespace)
    assert found is not None
    return dict(found["spec"])


def test_one_leads_the_other_waits_out_the_lease_by_its_own_clock(
    lease_client: KubeClient, namespace: str
) -> None:
    clock_a, clock_b = Clock(), Clock()
    a = elector(lease_client, namespace, "a", clock_a)
    b = elector(lease_client, namespace, "b", clock_b)
    heard: list[bool] = []
    a.on_change(heard.append)

    assert a.try_once() is Action.CREATE
    assert a.is_leader and heard == [True]
    assert b.try_once() is Action.WAIT
    assert not b.may_write()
    assert lease(lease_client, namespace)["holderIdentity"] == "a"

    # a is stuck (it stops renewing). By b's clock, 14.9 s without a change: wait.
    clock_b.now += 14.9
    assert b.try_once() is Action.WAIT
    # a stops writing at its renew deadline, before b may take over.
    clock_a.now += 10.0
    assert not a.may_write()
    clock_b.now += 0.1
    assert b.try_once() is Action.ACQUIRE
    assert b.may_write()
    spec = lease(lease_client, namespace)
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1

    # a comes back: it reads b's name and knows it lost; it never competes again.
    assert a.try_once() is Action.LOST
    assert a.lost
    assert heard == [True, False]


def test_the_renewals_keep_the_lead_and_a_standby_sees_each_one_as_a_change(
    lease_client: KubeClient, namespace: str
) -> None:
    clock_a, clock_b = Clock(), Clock()
    a = elector(lease_client, namespace, "a", clock_a)
    b = elector(lease_client, namespace, "b", clock_b)
    assert a.try_once() is Action.CREATE
    assert b.try_once() is Action.WAIT
    for _ in range(5):  # 5 x 9 s: far past one lease duration, renewed all along
        clock_a.now += 9.0
        clock_b.now += 9.0
        assert a.try_once() is Action.RENEW
        assert a.may_write()
        assert b.try_once() is Action.WAIT
    assert lease(lease_client, namespace)["leaseTransitions"] == 0


def test_of_two_writes_on_one_resource_version_the_second_gets_a_409(
    lease_client: KubeClient, namespace: str
) -> None:
    a = elector(lease_client, namespace, "a", Clock())
    assert a.try_once() is Action.CREATE
    read = lease_client.get(LEASE_API, "Lease", "gitsync-test", namespace=namespace)
    assert read is not None
    first = {**read, "spec": {**read["spec"], "holderIdentity": "x"}}
    second = {**read, "spec": {**read["spec"], "holderIdentity": "y"}}
    lease_client.update(first)
    with pytest.raises(ApiConflictError):
        lease_client.update(second)
    assert lease(lease_client, namespace)["holderIdentity"] == "x"


def test_a_release_lets_the_standby_take_over_at_its_next_try(
    lease_client: KubeClient, namespace: str
) -> None:
    a = elector(lease_client, namespace, "a", Clock())
    b = elector(lease_client, namespace, "b", Clock())
    assert a.try_once() is Action.CREATE
    assert b.try_once() is Action.WAIT
    a.stop(release=True)
    spec = lease(lease_client, namespace)
    assert spec["holderIdentity"] == ""
    assert spec["leaseDurationSeconds"] == 1
    assert not a.may_write()
    assert not a.lost  # a clean stop is no loss
    assert b.try_once() is Action.ACQUIRE  # no waiting: the record says "free"
    assert lease(lease_client, namespace)["leaseTransitions"] == 1


def test_a_leader_past_its_renew_deadline_does_not_renew_even_if_it_could(
    lease_client: KubeClient, namespace: str
) -> None:
    # Its renewals hung (a paused server) until the deadline passed: the next read
    # succeeds, and still it stops, as client-go's leader does when its renew times out.
    clock = Clock()
    a = elector(lease_client, namespace, "a", clock)
    assert a.try_once() is Action.CREATE
    renewed = lease(lease_client, namespace)["renewTime"]
    clock.now += 10.0
    assert a.try_once() is Action.LOST
    assert a.lost
    assert not a.may_write()
    assert lease(lease_client, namespace)["renewTime"] == renewed
