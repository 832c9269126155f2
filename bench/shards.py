"""Benchmark sharding and Events against the local control plane (issue 12).

Figures, with N generated ModelDeployments (bench/reconcile.py's repo):
  * the first sync of N by one process, and by each of S shards (run one after the
    other here: as processes they would run at once, so the slowest shard is the
    wall time a sharded instance would take);
  * the no-op cycle of one shard, watching, against the unsharded one;
  * the first sync with Events on: the cycle's own time, and how long the recorder
    then takes to post its N Events (one per created object);
  * what Events add to the cycle itself: deriving N Events from a report of N
    created objects (pure, so measured in-process: --derive-only runs only this).
Timings are medians of --runs runs; each first sync uses a fresh namespace and
instance, so it really creates its N objects.

Usage: .venv/bin/python bench/shards.py --n 1000 --shards 4 --runs 3
It starts its own control plane (no dev controllers) in a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from reconcile import ROOT, make_repo, median_ms, timed

from gitsync.clients.git import GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev import controlplane
from gitsync.diff import Action, Change, ChangeSet
from gitsync.event_recorder import EventRecorder
from gitsync.events import cycle_events
from gitsync.log import configure as configure_logging
from gitsync.reconciler import Reconciler, SyncOptions
from gitsync.render import ANNOTATION_SOURCE_COMMIT, ANNOTATION_SOURCE_PATH
from gitsync.sharding import Shard
from gitsync.types import ObjectRef


def main() -> None:
    configure_logging(json=False, level="warning")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--derive-only", action="store_true")
    args = parser.parse_args()
    derive(args.n)
    if args.derive_only:
        return
    with tempfile.TemporaryDirectory(prefix="gitsync-bench-") as scratch:
        tmp = Path(scratch)
        crds = ROOT.parent / "shared" / "crds"
        plane = controlplane.up(
            tmp / "plane", crd_dirs=[crds / "kserve" / "full"], controllers=False
        )
        try:
            run(plane.kubeconfig, tmp, n=args.n, shards=args.shards, runs=args.runs)
        finally:
            controlplane.down(tmp / "plane")


def run(kubeconfig: Path, tmp: Path, *, n: int, shards: int, runs: int) -> None:
    kube = KubeClient.from_kubeconfig(kubeconfig, timeout=(5.0, 120.0))
    whole, sharded, with_events, posting, noop, noop_shard = [], [], [], [], [], []
    for run_index in range(runs):
        namespace = f"bench-{run_index}"
        (tmp / namespace).mkdir()
        remote, _ = make_repo(tmp / namespace, n, namespace=namespace)

        def reconciler(
            shard: Shard,
            *,
            instance: str,
            events: EventRecorder | None = None,
            watch: bool = False,
            url: str = remote.as_uri(),
        ) -> Reconciler:
            # A client of its own, as each shard is a process of its own.
            return Reconciler(
                git=GitSource(url, branch="main", cache_dir=tmp / "cache"),
                kube=KubeClient.from_kubeconfig(kubeconfig, timeout=(5.0, 120.0)),
                options=SyncOptions(instance=instance, shard=shard),
                watch=watch,
                events=events,
            )

        # Unsharded, watching (as `gitsync run`), then its no-op cycles.
        one = reconciler(Shard(), instance=f"one-{run_index}", watch=True)
        seconds, report = timed(one.cycle)
        assert not report.failed, report.changes.failures[:3]
        whole.append(seconds)
        one.cycle()
        one.cycle()
        noop += [timed(one.cycle)[0] for _ in range(3)]
        one.close()
        delete_all(kube, namespace)

        # S shards, one after the other; the slowest is a sharded instance's wall time.
        times = []
        parts = [
            reconciler(Shard(i, shards), instance=f"sharded-{run_index}", watch=True)
            for i in range(shards)
        ]
        for part in parts:
            seconds, report = timed(part.cycle)
            assert not report.failed, report.changes.failures[:3]
            times.append(seconds)
        sharded.append(max(times))
        parts[0].cycle()
        parts[0].cycle()
        noop_shard += [timed(parts[0].cycle)[0] for _ in range(3)]
        for part in parts:
            part.close()
        delete_all(kube, namespace)

        # Events on: the cycle hands them over; the recorder posts them after.
        recorder = EventRecorder(KubeClient.from_kubeconfig(kubeconfig), reporting_instance="bench")
        evented = reconciler(Shard(), instance=f"events-{run_index}", events=recorder, watch=True)
        seconds, report = timed(evented.cycle)
        with_events.append(seconds)
        started = time.perf_counter()
        assert recorder.flush(600)
        posting.append(time.perf_counter() - started)
        assert recorder.posted >= n, (recorder.posted, recorder.failed)
        evented.close()
        delete_all(kube, namespace)

    print("samples (s):", {"one": whole, "sharded": sharded, "events": with_events})
    print(f"first sync of {n}, one process: median {statistics.median(whole):.1f} s")
    print(
        f"first sync of {n}, slowest of {shards} shards: median {statistics.median(sharded):.1f} s"
    )
    print(
        f"no-op cycle, watching: unsharded median {median_ms(noop)} ms, "
        f"one of {shards} shards {median_ms(noop_shard)} ms"
    )
    print(
        f"first sync of {n} with Events: cycle median {statistics.median(with_events):.1f} s, "
        f"then {statistics.median(posting):.1f} s to post {n} Events "
        f"({n / statistics.median(posting):.0f}/s)"
    )


def derive(n: int) -> None:
    """The cycle's share of Events: cycle_events over n created objects."""
    objects: dict[ObjectRef, dict[str, Any]] = {}
    for index in range(n):
        body = {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {
                "name": f"model-{index:05d}",
                "namespace": "bench",
                "uid": f"uid-{index}",
                "annotations": {
                    ANNOTATION_SOURCE_PATH: f"models/model-{index:05d}.yaml",
                    ANNOTATION_SOURCE_COMMIT: "0" * 40,
                },
            },
        }
        objects[ObjectRef.of(body)] = body
    changes = ChangeSet(tuple(Change(k, Action.CREATED, desired=v) for k, v in objects.items()))
    samples = []
    for _ in range(9):
        started = time.perf_counter()
        found = cycle_events(
            changes=changes, rollouts={}, statuses=(), objects=objects, previous={}
        )
        samples.append(time.perf_counter() - started)
    assert len(found) == n
    print(f"deriving {n} Events from a cycle's report: median {median_ms(samples)} ms")


def delete_all(kube: KubeClient, namespace: str) -> None:
    """Remove the run's objects (no garbage collector runs here), keeping the cluster's
    size the same for every configuration."""
    listed = kube.list("serving.kserve.io/v1beta1", "InferenceService", namespace=namespace)
    for item in listed["items"]:
        kube.delete(
            "serving.kserve.io/v1beta1",
            "InferenceService",
            item["metadata"]["name"],
            namespace=namespace,
        )


if __name__ == "__main__":
    main()
