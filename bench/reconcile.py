"""Benchmark the reconcile cycle against the local control plane.

Figures (issue 3): with N generated ModelDeployments,
  * first sync of N (target: < 30 s at N=1000),
  * no-op cycle time and API requests (target: < 100 ms median, zero writes),
  * one changed spec among N: time until applied (target: < 500 ms),
  * peak RSS of the process (run with --n 5000 for the < 250 MB target).
Each timing is the median of --runs runs, measured as `gitsync run` works (informers
keep the live objects current). The baseline, run side by side on the same cluster
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

    def reconciler(*, watch: bool) -> Reconciler:
        return Reconciler(
            git=GitSource(remote.as_uri(), branch="main", cache_dir=tmp / "cache"),
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

    one_change = []
    for version in range(2, runs + 2):
        path = work / "models" / "g000" / "model-00007.yaml"
        path.write_text(model(7, version))
        git("commit", "-qam", f"model 7 v{version}", cwd=work)
        git("push", "-q", str(remote), "main", cwd=work)
        seconds, report = timed(warm.cycle)
        assert [c.key.name for c in report.changes.writes] == ["model-00007"]
        one_change.append(seconds)
        if listing:
            listing.cycle()
        warm.cycle()  # sees its own write come back through the watch
    print(f"one changed spec among {n}: median {median_ms(one_change)} ms to applied")
    warm.close()

    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {peak_kb / 1024:.0f} MB (python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
