"""Benchmark the reconcile cycle against the local control plane.

Figures (issue 3): with N generated ModelDeployments,
  * first sync of N (target: < 30 s at N=1000),
  * no-op cycle time and API requests (target: < 100 ms median, zero writes),
  * one changed spec among N: time until applied (target: < 500 ms; issue 13: <= 100 ms
    after the fetch that sees it), and the whole cycle with its statuses,
  * peak RSS of the process (run with --n 5000 for the < 250 MB target).
Each timing is the median of --runs runs, measured as `gitsync run` works (informers
keep the live objects current). "Applied" is when a watch in a process of its own
(bench/applied.py, started before the push) sees the new storageUri; "the fetch" is
when the cycle's fetch of the spec branch returned (the git client's network
observer, the hook its metrics use). The baseline, run side by side on the same cluster
and repo, is `gitsync sync`'s way: a reconciler that LISTs the live objects every
cycle and may not skip a quiet cycle; the ratio shows what watching buys.

Usage: .venv/bin/python bench/reconcile.py --n 1000 --runs 5
It starts its own control plane (without dev controllers, so only gitsync talks to
the API server) in a temporary folder and stops it at the end.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from applied import AppliedWatch

from gitsync.clients.git import GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev import controlplane
from gitsync.log import configure as configure_logging
from gitsync.reconciler import CycleReport, Reconciler, SyncOptions

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def model(index: int, version: int = 1) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "gitsync.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": f"model-{index:05d}", "labels": {"team": f"t{index % 7}"}},
            "spec": {
                "model": {"format": "sklearn", "storageUri": f"s3://models/m{index}/v{version}"},
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                "replicas": {"min": 1, "max": 2},
            },
        }
    )


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def spread_ms(samples: list[float]) -> str:
    """The median and the range, in milliseconds."""
    low, high = min(samples) * 1000, max(samples) * 1000
    return f"{median_ms(samples)} ms ({low:.1f}-{high:.1f})"


class FetchClock:
    """When each fetch of a git client returned (it is the client's network observer)."""

    def __init__(self) -> None:
        self.returned: list[float] = []

    def __call__(self, operation: str, seconds: float, *, failed: bool) -> None:
        if operation == "fetch" and not failed:
            self.returned.append(time.monotonic())

    def first_after(self, moment: float) -> float:
        return next(t for t in self.returned if t >= moment)


def timed(cycle: Callable[[], CycleReport]) -> tuple[float, CycleReport]:
    started = time.perf_counter()
    report = cycle()
    return time.perf_counter() - started, report


def main() -> None:
    configure_logging(json=False, level="warning")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="run only `gitsync run`'s way, so peak RSS is the daemon's alone",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gitsync-bench-") as scratch:
        tmp = Path(scratch)
        crds = ROOT.parent / "shared" / "crds"
        plane = controlplane.up(
            tmp / "plane", crd_dirs=[crds / "kserve" / "full"], controllers=False
        )
        try:
            run(plane.kubeconfig, tmp, n=args.n, runs=args.runs, baseline=not args.no_baseline)
        finally:
            controlplane.down(tmp / "plane")


def make_repo(tmp: Path, n: int, *, namespace: str = "bench") -> tuple[Path, Path]:
    """A bare remote holding n ModelDeployments, and its work tree."""
    remote, work = tmp / "remote.git", tmp / "work"
    git("init", "--bare", "--initial-branch=main", str(remote), cwd=tmp)
    git("init", "--initial-branch=main", str(work), cwd=tmp)
    (work / "gitsync.yaml").write_text(f"defaults: {{namespace: {namespace}}}\n")
    for index in range(n):
        folder = work / "models" / f"g{index // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"model-{index:05d}.yaml").write_text(model(index))
    git("add", "-A", cwd=work)
    git("commit", "-qm", f"{n} models", cwd=work)
    git("push", "-q", str(remote), "main", cwd=work)

    return remote, work


def run(kubeconfig: Path, tmp: Path, *, n: int, runs: int, baseline: bool) -> None:
    remote, work = make_repo(tmp, n)
    kube = KubeClient.from_kubeconfig(kubeconfig, timeout=(5.0, 120.0))
    options = SyncOptions(instance="bench")

    fetches = FetchClock()

    def reconciler(*, watch: bool) -> Reconciler:
        return Reconciler(
            git=GitSource(
                remote.as_uri(),
                branch="main",
                cache_dir=tmp / "cache",
                observer=fetches if watch else None,
            ),
            kube=kube,
            options=options,
            watch=watch,
        )

    warm = reconciler(watch=True)
    listing = reconciler(watch=False) if baseline else None
    first_s, first = timed(warm.cycle)
    assert not first.failed, first.changes.failures[:3]
    print(f"first sync of {n}: {first_s:.1f} s ({first.changes.summary()})")
    # The first status said "applied, waiting for the controller"; the next cycle sees
    # the live objects (no controller runs here) and records that once; the one after
    # sees its own writes come back through the watch.
    warm.cycle()
    warm.cycle()
    if listing:
        listing.cycle()

    noop, noop_baseline, requests = [], [], []
    for _ in range(runs):
        before = sum(kube.requests.values())
        writes_before = kube.requests["PATCH"] + kube.requests["POST"] + kube.requests["DELETE"]
        seconds, report = timed(warm.cycle)
        noop.append(seconds)
        requests.append(sum(kube.requests.values()) - before)
        writes = kube.requests["PATCH"] + kube.requests["POST"] + kube.requests["DELETE"]
        assert writes == writes_before, "a no-op cycle wrote to the cluster"
        assert report.status_commit is None, "a no-op cycle committed status"
        if listing:
            seconds, _ = timed(listing.cycle)
            noop_baseline.append(seconds)
    line = (
        f"no-op cycle at N={n}: median {median_ms(noop)} ms, "
        f"{statistics.median(requests):.0f} API requests, 0 writes"
    )
    if noop_baseline:
        line += (
            f"; baseline (LIST every cycle) {median_ms(noop_baseline)} ms; "
            f"ratio {statistics.median(noop_baseline) / statistics.median(noop):.1f}x"
        )
    print(line)

    one_change(
        warm,
        listing,
        kubeconfig=kubeconfig,
        work=work,
        remote=remote,
        fetches=fetches,
        n=n,
        runs=runs,
    )
    warm.close()

    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {peak_kb / 1024:.0f} MB (python {sys.version.split()[0]})")


def one_change(
    warm: Reconciler,
    listing: Reconciler | None,
    *,
    kubeconfig: Path,
    work: Path,
    remote: Path,
    fetches: FetchClock,
    n: int,
    runs: int,
) -> None:
    """Change one model's storageUri --runs times; time it from the cycle's start and
    from its fetch until a watch outside this process sees it, and the whole cycle."""
    fetch_to_applied, start_to_applied, whole_cycle = [], [], []
    watch = AppliedWatch(kubeconfig, namespace="bench")
    try:
        for version in range(2, runs + 2):
            path = work / "models" / "g000" / "model-00007.yaml"
            path.write_text(model(7, version))
            git("commit", "-qam", f"model 7 v{version}", cwd=work)
            git("push", "-q", str(remote), "main", cwd=work)
            started = time.monotonic()
            report = warm.cycle()
            ended = time.monotonic()
            assert [c.key.name for c in report.changes.writes] == ["model-00007"]
            applied = watch.applied("model-00007", f"s3://models/m7/v{version}", timeout=30)
            fetch_to_applied.append(applied - fetches.first_after(started))
            start_to_applied.append(applied - started)
            whole_cycle.append(ended - started)
            if listing:
                listing.cycle()
            warm.cycle()  # sees its own write come back through the watch
    finally:
        watch.close()
    print(
        f"one changed spec among {n}, median (range) of {runs}: "
        f"fetch -> applied {spread_ms(fetch_to_applied)}; "
        f"cycle start -> applied {spread_ms(start_to_applied)}; "
        f"the whole cycle, statuses committed and pushed {spread_ms(whole_cycle)}"
    )


if __name__ == "__main__":
    main()
