"""Benchmark gitsync against its peer, `kubectl apply --server-side` (issue 13).

The question a user asks is not how fast a cycle is in-process but whether gitsync is
slower than the kubectl apply it replaces; so both run as whole processes, side by
side on one API server (no controllers: only they talk to it), each in namespaces of
its own, fresh for every run, with the same N objects:
  * first apply of N ModelDeployments' InferenceServices (the namespace included),
  * a no-op (the same again): for gitsync, the sync after one that settled, which
    repeats its report once it has read the same inputs (gitsync.replay); and the
    no-op without that record or the last sync's ledger (the whole cycle), against
    the same kubectl figure,
  * one changed object among N (gitsync has the ledger of the sync before, and
    carries what it found unchanged: gitsync.focus),
  * the no-op right after that change: the change's sync wrote, so it left no record
    to repeat, only its ledger.
Beside them, the floor: the same first apply by a bare client in this (warm) process,
gitsync's KubeClient with the first --concurrency writers and nothing else (no
imports, loading, policies, Events or statuses). No client applies faster on this
API server, so it bounds the first-apply ratio any client can reach here. And the
floor with Events: the same, then the Created Event gitsync posts on each object
(issue 12), by gitsync's EventRecorder: the bound for a client that tells them.
kubectl gets the objects gitsync itself renders (the snapshot and evaluation of the
generated repo) in one YAML file; gitsync gets the repo. Figures are medians of
--runs runs, and the table gives each gitsync figure's ratio kubectl / gitsync
(above 1: gitsync is faster), for each --concurrency.

Usage: .venv/bin/python bench/peer.py --n 1000 --runs 3 --concurrency 1 4 8 [--no-events-too]
  --before DIR also times the gitsync source tree in DIR (a `git archive` of an older
  commit), at its own defaults, as the baseline of a change.
It starts its own control plane in a temporary folder and stops it at the end;
kubectl is built once from gitsync/dev/kube/go.mod (about a minute) and cached.
gitsync runs from its source tree on a venv of its runtime dependencies alone, as a
user's install has them, with its modules compiled to bytecode (see bench/runtime.py).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from reconcile import ROOT, git, make_repo, model
from runtime import runtime_python, tree_environment

from gitsync.clients.kube import KubeClient
from gitsync.dev import controlplane
from gitsync.dev.binaries import ensure_kubectl
from gitsync.evaluation import Evaluator
from gitsync.event_recorder import EventRecorder
from gitsync.events import EventAction, EventIntent, Reason, regarding
from gitsync.render import RenderContext
from gitsync.snapshot import read_folder
from gitsync.spec_status import ISVC_API

PHASES = ("first apply", "no-op", "no-op, whole cycle", "one change", "no-op after a change")
CHANGED = 7  # the index of the model the "one change" phase edits


def timed(command: list[str], *, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{command[:4]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds


def rendered(work: Path, namespace: str) -> list[dict[str, Any]]:
    """What gitsync would apply for the repo in ``work``, in ``namespace``."""
    snapshot = read_folder(work)
    context = RenderContext(instance="peer", default_namespace=namespace)
    evaluation = Evaluator().evaluate(
        snapshot.loaded, policies=snapshot.policies, context=context, blobs=snapshot.blobs
    )
    return [body for body in evaluation.desired if body is not None]


def kubectl_run(
    kubectl: Path, kubeconfig: Path, work: Path, tmp: Path, namespace: str
) -> list[float]:
    objects = rendered(work, namespace)
    namespace_doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    manifest = tmp / f"{namespace}.yaml"
    command = [str(kubectl), "--kubeconfig", str(kubeconfig), "apply", "--server-side"]
    command += ["-f", str(manifest)]

    def write(documents: list[dict[str, Any]]) -> None:
        manifest.write_text(
            yaml.dump_all([namespace_doc, *documents], Dumper=yaml.CSafeDumper), encoding="utf-8"
        )

    write(objects)
    first = timed(command)
    noop = timed(command)
    changed = copy.deepcopy(objects)
    predictor = changed[CHANGED]["spec"]["predictor"]
    model_spec = predictor.get("model") or predictor["sklearn"]
    model_spec["storageUri"] += "-v2"
    write(changed)
    change = timed(command)
    return [first, noop, noop, change, timed(command)]


def clear(kubeconfig: Path, namespace: str) -> None:
    """Delete what a setup applied in ``namespace`` once it is timed: every setup then
    runs on a server holding what the others ran on. A LIST by label reads every
    InferenceService the server holds, so a server filling up run after run (25,000
    objects by the end of five runs) slowed the later syncs, not kubectl's applies."""
    kube = KubeClient.from_kubeconfig(kubeconfig, concurrency=1, qps=0)
    try:
        path = kube.resource(ISVC_API, "InferenceService").path(namespace=namespace)
        kube.request("DELETE", path)
    finally:
        kube.close()


def floor_run(kubeconfig: Path, work: Path, namespace: str, *, workers: int, events: bool) -> float:
    """Seconds a bare client with ``workers`` writers takes to apply the objects; with
    ``events``, and to post the Created Event gitsync tells for each (issue 12), by
    gitsync's own EventRecorder once the writes are done, as a sync posts them."""
    objects = rendered(work, namespace)
    kube = KubeClient.from_kubeconfig(kubeconfig, concurrency=workers, qps=0)
    try:
        started = time.perf_counter()
        kube.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            field_manager="floor",
        )
        with ThreadPoolExecutor(workers) as pool:
            applied = list(pool.map(lambda body: kube.apply(body, field_manager="floor"), objects))
        if events:
            recorder = EventRecorder(kube, reporting_instance="floor")
            recorder.record(
                EventIntent(ref, Reason.CREATED, EventAction.APPLY, "created from the floor")
                for obj in applied
                if (ref := regarding(obj)) is not None
            )
            recorder.close(timeout=120)
            if recorder.posted != len(objects):
                raise SystemExit(f"floor: {recorder.posted} of {len(objects)} Events posted")
        return time.perf_counter() - started
    finally:
        kube.close()


def gitsync_run(
    kubeconfig: Path,
    remote: Path,
    work: Path,
    tmp: Path,
    *,
    instance: str,
    env: dict[str, str],
    python: Path,
) -> list[float]:
    # -P: not the current folder first on the path, so PYTHONPATH picks the tree.
    command = [str(python), "-P", "-m", "gitsync", "sync", "--repo", remote.as_uri()]
    command += ["--instance", instance, "--cache-dir", str(tmp / f"cache-{instance}")]
    command += ["--kubeconfig", str(kubeconfig)]
    first = timed(command, env=env)
    # The first status said "applied, waiting for the controller"; this sync sees the
    # live objects and records that once, so the next is a true no-op.
    timed(command, env=env)
    noop = timed(command, env=env)
    # The same without the record the settled sync left (gitsync.replay) and the
    # ledger beside it (gitsync.focus): what a no-op costs with no memory of the last
    # sync, as with a fresh cache.
    shutil.rmtree(tmp / f"cache-{instance}" / "sync", ignore_errors=True)
    whole = timed(command, env=env)
    path = work / "models" / "g000" / f"model-{CHANGED:05d}.yaml"
    path.write_text(model(CHANGED, 2))
    git("commit", "-qam", "one change", cwd=work)
    git("push", "-q", str(remote), "main", cwd=work)
    change = timed(command, env=env)
    return [first, noop, whole, change, timed(command, env=env)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--before", type=Path, default=None, help="an older gitsync source tree")
    parser.add_argument(
        "--no-events-too",
        action="store_true",
        help="also time gitsync with --no-events at the first --concurrency: the Events of"
        " a first sync are as many requests again as its applies",
    )
    args = parser.parse_args()
    kubectl = ensure_kubectl()
    python = runtime_python()

    setups: dict[str, dict[str, str]] = {}
    if args.before is not None:
        setups["before"] = tree_environment(args.before)
    for workers in args.concurrency:
        setups[f"c={workers}"] = tree_environment(ROOT, GITSYNC_CONCURRENCY=str(workers))
    if args.no_events_too:
        workers = args.concurrency[0]
        setups[f"c={workers} no Events"] = tree_environment(
            ROOT, GITSYNC_CONCURRENCY=str(workers), GITSYNC_EVENTS="false"
        )

    samples: dict[str, list[list[float]]] = {"kubectl": [], **{name: [] for name in setups}}
    floors: list[float] = []
    floors_events: list[float] = []
    with tempfile.TemporaryDirectory(prefix="gitsync-peer-") as scratch:
        tmp = Path(scratch)
        crds = ROOT.parent / "shared" / "crds"
        plane = controlplane.up(
            tmp / "plane", crd_dirs=[crds / "kserve" / "full"], controllers=False
        )
        try:
            for run in range(args.runs):
                base = tmp / f"kubectl-{run}"
                base.mkdir()
                _, work = make_repo(base, args.n)
                samples["kubectl"].append(
                    kubectl_run(kubectl, plane.kubeconfig, work, tmp, f"kubectl-{run}")
                )
                clear(plane.kubeconfig, f"kubectl-{run}")
                for events, floor in ((False, floors), (True, floors_events)):
                    namespace = f"floor-{run}{'-events' if events else ''}"
                    floor.append(
                        floor_run(
                            plane.kubeconfig,
                            work,
                            namespace,
                            workers=args.concurrency[0],
                            events=events,
                        )
                    )
                    clear(plane.kubeconfig, namespace)
                # Each run starts with another setup: the server holds more objects
                # as the runs go on, and no setup should always come first.
                order = list(setups.items())
                order = order[run % len(order) :] + order[: run % len(order)]
                for index, (name, env) in enumerate(order):
                    instance = f"g{run}-{index}"
                    base = tmp / instance
                    base.mkdir()
                    remote, work = make_repo(base, args.n, namespace=instance)
                    samples[name].append(
                        gitsync_run(
                            plane.kubeconfig,
                            remote,
                            work,
                            tmp,
                            instance=instance,
                            env=env,
                            python=python,
                        )
                    )
                    clear(plane.kubeconfig, instance)
                print(f"run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
        finally:
            controlplane.down(tmp / "plane")
    report(samples, n=args.n, runs=args.runs)
    kubectl_first = statistics.median(run[0] for run in samples["kubectl"])
    bounds = ((floors, "applied them"), (floors_events, "applied them and posted their Events"))
    for floor, what in bounds:
        seconds = statistics.median(floor)
        print(
            f"floor: a bare client with {args.concurrency[0]} writers {what} in"
            f" {seconds:.2f} s (kubectl/floor {kubectl_first / seconds:.2f}x)"
        )


def report(samples: dict[str, list[list[float]]], *, n: int, runs: int) -> None:
    medians = {
        name: [statistics.median(run[phase] for run in runs_) for phase in range(len(PHASES))]
        for name, runs_ in samples.items()
    }
    gitsyncs = [name for name in medians if name != "kubectl"]
    header = ["phase", "kubectl s"]
    for name in gitsyncs:
        header += [f"gitsync {name} s", "kubectl/gitsync"]
    print(f"N={n}, medians of {runs} runs, each a whole process")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for phase, label in enumerate(PHASES):
        kubectl = medians["kubectl"][phase]
        row = [label, f"{kubectl:.2f}"]
        for name in gitsyncs:
            seconds = medians[name][phase]
            row += [f"{seconds:.2f}", f"{kubectl / seconds:.2f}x"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
