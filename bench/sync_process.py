"""Benchmark `gitsync sync` as a whole process: start-up, imports and all.

`bench/reconcile.py` times cycles inside one long-lived process (the daemon's case);
a CI job or a cron entry runs `gitsync sync` afresh each time, so what it pays is
the interpreter, the imports, and whatever it cannot remember between processes.
Figures (issue 13), each the median of --runs processes with N generated
ModelDeployments:
  * first sync of N (empty cache, nothing in the cluster),
  * no-op sync (target: about 1.2 s at N=1000): the sync after one that settled,
    which repeats that one's report once it has read the same inputs again
    (gitsync.replay), and the same without that record: the whole cycle,
  * one changed spec among N,
  * the peak RSS of the largest of those processes.

Usage: .venv/bin/python bench/sync_process.py --n 1000 --runs 3 [--baseline DIR]
With --baseline (a source tree of another gitsync, say `git archive <commit>`
unpacked), each sync of this tree is paired with one of that tree on the same repo,
cache and cluster, and the medians of both and of the pairwise ratio are printed:
pairing keeps the comparison fair on a machine whose speed drifts.
It starts its own control plane (without dev controllers) in a temporary folder and
stops it at the end. gitsync runs from each source tree on a venv of its runtime
dependencies alone, as a user's install has them (see bench/runtime.py). Each tree's
modules are compiled to bytecode first, as installing a wheel does: with
PYTHONDONTWRITEBYTECODE set (as on the benchmark machine) an editable install would
otherwise compile all of gitsync in every process, about 0.1 s of each.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from reconcile import ROOT, git, make_repo, model
from runtime import runtime_python, tree_environment

from gitsync.dev import controlplane

PYTHON = runtime_python()
ENVIRONMENTS: dict[Path, dict[str, str]] = {}


def sync(remote: Path, kubeconfig: Path, cache: Path, tree: Path | None = None) -> float:
    """Seconds one `gitsync sync` process takes, start to exit; it must succeed.
    ``tree``: the gitsync source to run instead of this one."""
    # -P: not the current folder first on the path, so PYTHONPATH picks the tree.
    command = [
        str(PYTHON),
        "-P",
        "-m",
        "gitsync",
        "sync",
        "--repo",
        remote.as_uri(),
        "--kubeconfig",
        str(kubeconfig),
        "--cache-dir",
        str(cache),
        "--instance",
        "bench",
    ]
    source = tree or ROOT
    if source not in ENVIRONMENTS:  # compiled once, before any process is timed
        ENVIRONMENTS[source] = tree_environment(source)
    env = ENVIRONMENTS[source]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    return seconds


def peak_rss_mb() -> float:
    """The largest resident set of any child process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def median(samples: list[float]) -> str:
    return f"{statistics.median(samples):.2f} s (runs: {', '.join(f'{s:.2f}' for s in samples)})"


def report(what: str, samples: list[float], baseline: list[float]) -> None:
    print(f"{what}: median {median(samples)}")
    if baseline:
        ratios = [a / b for a, b in zip(samples, baseline, strict=True)]
        print(f"  baseline: median {median(baseline)}; ratio {statistics.median(ratios):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None, help="a gitsync source tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitsync-bench-") as scratch:
        tmp = Path(scratch)
        crds = ROOT.parent / "shared" / "crds"
        plane = controlplane.up(
            tmp / "plane", crd_dirs=[crds / "kserve" / "full"], controllers=False
        )
        try:
            remote, work = make_repo(tmp, args.n)
            cache = tmp / "cache"
            first = sync(remote, plane.kubeconfig, cache)
            print(f"first sync of {args.n}: {first:.2f} s (peak RSS {peak_rss_mb():.0f} MB)")
            # The first sync's statuses said "applied, waiting"; the next one records
            # the live objects once. From then on a sync changes nothing.
            sync(remote, plane.kubeconfig, cache)
            trees = [None] if args.baseline is None else [None, args.baseline]
            if args.baseline is not None:  # its own cache entries, which may differ in form
                sync(remote, plane.kubeconfig, cache, args.baseline)
            noop: dict[Path | None, list[float]] = {tree: [] for tree in trees}
            whole: dict[Path | None, list[float]] = {tree: [] for tree in trees}
            for _ in range(args.runs):
                for tree in trees:
                    noop[tree].append(sync(remote, plane.kubeconfig, cache, tree))
                    # Without the last settled sync's record (the first no-op after
                    # a change, or another configuration): the whole cycle.
                    shutil.rmtree(cache / "sync", ignore_errors=True)
                    whole[tree].append(sync(remote, plane.kubeconfig, cache, tree))
            report(
                f"no-op sync of {args.n}", noop[None], noop[args.baseline] if args.baseline else []
            )
            report(
                f"no-op sync of {args.n}, whole cycle (no record to repeat)",
                whole[None],
                whole[args.baseline] if args.baseline else [],
            )
            changed: dict[Path | None, list[float]] = {tree: [] for tree in trees}
            version = 1
            for _ in range(args.runs):
                for tree in trees:
                    version += 1
                    (work / "models" / "g000" / "model-00007.yaml").write_text(model(7, version))
                    git("commit", "-qam", f"model 7 v{version}", cwd=work)
                    git("push", "-q", str(remote), "main", cwd=work)
                    changed[tree].append(sync(remote, plane.kubeconfig, cache, tree))
            report(
                f"one changed spec among {args.n}",
                changed[None],
                changed[args.baseline] if args.baseline else [],
            )
            print(f"peak RSS of any process: {peak_rss_mb():.0f} MB")
        finally:
            controlplane.down(tmp / "plane")


if __name__ == "__main__":
    main()
