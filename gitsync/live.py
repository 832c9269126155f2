"""Where a cycle sees the cluster: one Protocol, two ways to keep it.

A single ``gitsync sync`` lists each kind once (:class:`ListedSource`); the daemon
keeps informers that watch (:class:`WatchedSource`), so a quiet cycle reads memory
and its ``version`` tells whether anything moved at all. Both see only the objects
carrying this instance's label, and both say "not served" (a missing CRD) by leaving
the kind out rather than failing, since nothing of an unserved kind can be pruned.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from gitsync.clients.kube import Informer, KubeClient
from gitsync.errors import ApiUnavailableError, NotFoundError
from gitsync.types import LABEL_INSTANCE

__all__ = ["ListedSource", "LiveSource", "WatchedSource", "instance_selector", "kinds_to_observe"]

Kind = tuple[str, str]  # apiVersion, kind


class LiveSource(Protocol):
    """The live objects of this instance, of the kinds asked for."""

    @property
    def version(self) -> int | None:
        """Grows whenever anything seen changes; None when that cannot be known."""

    def objects(self, kinds: Sequence[Kind]) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def instance_selector(instance: str) -> str:
    """The label selector of the objects ``instance`` wrote: all a cycle looks at."""
    return f"{LABEL_INSTANCE}={instance}"


def kinds_to_observe(
    *,
    rendered: Iterable[Kind],
    manifests: Iterable[Mapping[str, Any]],
    recorded: Iterable[Kind],
) -> list[Kind]:
    """Every kind a cycle must look at: those gitsync renders, those of plain manifests
    in Git, and those a status document recorded (so a kind whose last file is gone
    is still listed, and its objects pruned)."""
    kinds = set(rendered) | set(recorded)
    kinds |= {(str(m["apiVersion"]), str(m["kind"])) for m in manifests}
    return sorted(kinds)


class ListedSource:
    """One LIST per kind and cycle: for a single ``gitsync sync``."""

    version: int | None = None  # unknown: every cycle must look

    def __init__(self, kube: KubeClient, *, selector: str) -> None:
        self._kube = kube
        self._selector = selector
        self._listed: tuple[Kind, ...] = ()
        self._fingerprint: str | None = None

    def objects(self, kinds: Sequence[Kind]) -> list[dict[str, Any]]:
        found = []
        listed: list[tuple[Kind, list[dict[str, Any]] | None]] = []
        for api_version, kind in kinds:
            try:
                listing = self._kube.list(api_version, kind, label_selector=self._selector)
            except NotFoundError:
                listed.append(((api_version, kind), None))
                continue
            items = listing.get("items", [])
            listed.append(((api_version, kind), items))
            for item in items:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                found.append(item)
        self._listed = tuple(kind for kind, _ in listed)
        self._fingerprint = _fingerprint(listed)
        return found

    @property
    def kinds(self) -> tuple[Kind, ...]:
        """The kinds the last :meth:`objects` listed (served or not)."""
        return self._listed

    @property
    def fingerprint(self) -> str | None:
        """A digest of what the last :meth:`objects` found, as it found it: each kind
        served or not, and each object's identity and resourceVersion. Two listings
        have equal fingerprints exactly when nothing listed was written, created or
        deleted in between (any write changes an object's resourceVersion; a deleted
        and recreated object has another uid). None before the first listing."""
        return self._fingerprint

    def close(self) -> None:
        """Nothing to release."""


def _fingerprint(listed: Sequence[tuple[Kind, Sequence[Mapping[str, Any]] | None]]) -> str:
    parts: list[object] = []
    for (api_version, kind), items in listed:
        identities = None
        if items is not None:
            identities = sorted(
                (
                    str(metadata.get("namespace", "")),
                    str(metadata.get("name", "")),
                    str(metadata.get("uid", "")),
                    str(metadata.get("resourceVersion", "")),
                )
                for metadata in (item.get("metadata") or {} for item in items)
            )
        parts.append([api_version, kind, identities])
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


class WatchedSource:
    """An informer per kind, started the first time the kind is asked for."""

    def __init__(self, kube: KubeClient, *, selector: str, sync_timeout: float = 30.0) -> None:
        self._kube = kube
        self._selector = selector
        self._sync_timeout = sync_timeout
        self._informers: dict[Kind, Informer] = {}

    @property
    def version(self) -> int:
        return sum(informer.version for informer in self._informers.values())

    def objects(self, kinds: Sequence[Kind]) -> list[dict[str, Any]]:
        for api_version, kind in kinds:
            if (api_version, kind) not in self._informers:
                informer = Informer(
                    self._kube, api_version=api_version, kind=kind, label_selector=self._selector
                )
                informer.start()
                self._informers[(api_version, kind)] = informer
        found: list[dict[str, Any]] = []
        for api_version, kind in kinds:
            informer = self._informers[(api_version, kind)]
            deadline = time.monotonic() + self._sync_timeout
            if informer.error is not None and not isinstance(informer.error, NotFoundError):
                # Retry now rather than when the informer's backoff ends: the server
                # may be back, and this cycle would otherwise fail on a stale error.
                # A kind the server does not serve (its CRD not installed) was an
                # answer, not an outage: its informer's own backoff looks again, and
                # a cycle does not wait for it.
                failures = informer.failures
                informer.kick()
                while (
                    informer.error is not None
                    and informer.failures == failures
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.02)
            while not informer.synced and informer.error is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if isinstance(informer.error, NotFoundError) and not informer.synced:
                continue
            if informer.error is not None or not informer.synced:
                # A cache that may be stale is no ground for applying or pruning.
                raise ApiUnavailableError(
                    f"watch of {kind} is not current: {informer.error or 'not synced yet'}"
                )
            found.extend(informer.snapshot().values())
        return found

    def close(self) -> None:
        for informer in self._informers.values():
            informer.stop()
