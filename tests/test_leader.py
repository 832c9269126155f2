"""The election's decisions as a table: what a candidate does with the Lease it read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gitsync.errors import ConfigurationError
from gitsync.leader import (
    ANNOTATION_LEADER_URL,
    Action,
    LeaseRecord,
    Timings,
    decide,
    lease_object,
    micro_time,
    released,
)

ME = "pod-a_1"
OTHER = "pod-b_2"
NOW = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
STAMP = "2026-12-01T12:00:00.123456Z"
OLD = "2026-12-01T11:00:00.000000Z"
#: A renewTime far in the future by our clock: a skewed clock's, which must not matter.
SKEWED = "2027-06-01T00:00:00.000000Z"


def held(holder: str, *, renew: str = OLD, duration: int = 15, transitions: int = 3) -> LeaseRecord:
    return LeaseRecord(holder, duration, OLD, renew, transitions)


@pytest.mark.parametrize(
    ("observed", "seen_for", "leading", "action", "written"),
    [
        pytest.param(
            None, 0.0, False, Action.CREATE, LeaseRecord(ME, 15, STAMP, STAMP, 0), id="no-lease"
        ),
        pytest.param(held(OTHER), 0.0, False, Action.WAIT, None, id="held-just-seen"),
        pytest.param(held(OTHER), 14.9, False, Action.WAIT, None, id="held-not-yet-expired"),
        pytest.param(
            held(OTHER),
            15.0,
            False,
            Action.ACQUIRE,
            LeaseRecord(ME, 15, STAMP, STAMP, 4),
            id="expired-by-our-clock",
        ),
        pytest.param(
            held(OTHER, renew=SKEWED),
            15.0,
            False,
            Action.ACQUIRE,
            LeaseRecord(ME, 15, STAMP, STAMP, 4),
            id="renewTime-in-the-future-is-ignored",
        ),
        pytest.param(
            held(OTHER, renew=OLD),
            1.0,
            False,
            Action.WAIT,
            None,
            id="renewTime-long-past-is-ignored",
        ),
        pytest.param(
            held(OTHER, duration=60),
            30.0,
            False,
            Action.WAIT,
            None,
            id="the-record's-own-duration-counts",
        ),
        pytest.param(
            held(ME),
            3.0,
            True,
            Action.RENEW,
            LeaseRecord(ME, 15, OLD, STAMP, 3),
            id="renew-keeps-acquire-time",
        ),
        pytest.param(
            held(ME),
            40.0,
            False,
            Action.RENEW,
            LeaseRecord(ME, 15, OLD, STAMP, 3),
            id="still-ours-after-a-pause: renew, no transition",
        ),
        pytest.param(held(OTHER), 2.0, True, Action.LOST, None, id="someone-else-took-it"),
        pytest.param(
            held("", duration=1),
            0.0,
            False,
            Action.ACQUIRE,
            LeaseRecord(ME, 15, STAMP, STAMP, 4),
            id="released: free at once",
        ),
    ],
)
def test_decide(
    observed: LeaseRecord | None,
    seen_for: float,
    leading: bool,
    action: Action,
    written: LeaseRecord | None,
) -> None:
    verdict = decide(
        observed, identity=ME, lease_duration=15, now=NOW, seen_for=seen_for, leading=leading
    )
    assert verdict.action is action
    assert verdict.record == written
    assert verdict.action.writes == (written is not None)


def test_micro_time_is_utc_with_microseconds() -> None:
    assert micro_time(NOW) == STAMP


def test_release_frees_the_lease_and_keeps_the_count() -> None:
    assert released(held(ME, transitions=7), now=NOW) == LeaseRecord("", 1, STAMP, STAMP, 7)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({}, LeaseRecord("", 0, None, None, 0), id="empty"),
        pytest.param(
            {"holderIdentity": ["x"], "leaseDurationSeconds": "15", "leaseTransitions": True},
            LeaseRecord("", 0, None, None, 0),
            id="wrong-types",
        ),
        pytest.param(
            {"holderIdentity": "x" * 10_000, "leaseTransitions": -4},
            LeaseRecord("", 0, None, None, 0),
            id="oversized-and-negative",
        ),
        pytest.param(
            {"holderIdentity": OTHER, "leaseDurationSeconds": 15, "renewTime": OLD},
            LeaseRecord(OTHER, 15, None, OLD, 0),
            id="partial",
        ),
    ],
)
def test_a_lease_of_garbage_reads_as_absent_fields(
    spec: dict[str, object], expected: LeaseRecord
) -> None:
    assert LeaseRecord.of({"spec": spec}) == expected
    assert LeaseRecord.of({"spec": "not a map"}) == LeaseRecord("", 0, None, None, 0)


def test_a_replace_keeps_metadata_and_its_resource_version() -> None:
    current = {
        "metadata": {
            "name": "gitsync-prod",
            "namespace": "ops",
            "resourceVersion": "42",
            "labels": {"team": "ml"},
            "managedFields": [{"manager": "x"}],
        },
        "spec": {"holderIdentity": OTHER},
    }
    body = lease_object(held(ME), name="gitsync-prod", namespace="ops", current=current)
    assert body["metadata"] == {
        "name": "gitsync-prod",
        "namespace": "ops",
        "resourceVersion": "42",
        "labels": {"team": "ml"},
    }
    assert body["spec"]["holderIdentity"] == ME
    created = lease_object(held(ME), name="gitsync-prod", namespace="ops")
    assert created["metadata"] == {"name": "gitsync-prod", "namespace": "ops"}


@pytest.mark.parametrize(
    ("lease", "renew", "retry"),
    [
        pytest.param(10, 10.0, 2.0, id="lease-not-longer-than-renew"),
        pytest.param(15, 2.4, 2.0, id="renew-within-jittered-retry"),
        pytest.param(0, 1.0, 0.5, id="zero-lease"),
        pytest.param(15, 10.0, 0.0, id="zero-retry"),
    ],
)
def test_timings_are_checked_as_client_go_does(lease: int, renew: float, retry: float) -> None:
    with pytest.raises(ConfigurationError):
        Timings(lease, renew, retry)


def test_default_timings_are_client_go_s() -> None:
    assert Timings() == Timings(15, 10.0, 2.0)


@pytest.mark.parametrize(
    ("before", "url", "after"),
    [
        pytest.param(
            {}, "http://10.0.0.5:8080", {ANNOTATION_LEADER_URL: "http://10.0.0.5:8080"}, id="set"
        ),
        pytest.param(
            {ANNOTATION_LEADER_URL: "http://10.0.0.4:8080", "team": "ml"},
            None,
            {"team": "ml"},
            id="the-previous-holders-removed",
        ),
        pytest.param(
            {ANNOTATION_LEADER_URL: "http://10.0.0.4:8080"},
            "http://10.0.0.5:8080",
            {ANNOTATION_LEADER_URL: "http://10.0.0.5:8080"},
            id="replaced",
        ),
        pytest.param({ANNOTATION_LEADER_URL: "http://10.0.0.4:8080"}, None, None, id="emptied"),
    ],
)
def test_the_writer_says_where_its_listener_is(
    before: dict[str, str], url: str | None, after: dict[str, str] | None
) -> None:
    current = {"metadata": {"name": "l", "namespace": "ops", "annotations": before}}
    body = lease_object(held(ME), name="l", namespace="ops", current=current, leader_url=url)
    assert body["metadata"].get("annotations") == after
