"""Benchmark a push webhook: from the hook's POST to the pushed model applied.

`gitsync run --interval 300 --listen` watches a repo of --n models on its own control
plane (with the dev controllers). Each run commits one new model, pushes it, POSTs a
signed GitHub push hook and times until the model's InferenceService is on the API
server: what a data scientist waits after `git push` with hooks set up, instead of up
to an interval. "On the API server" is when a watch in a process of its own
(bench/applied.py, started before the first push) sees it arrive, not a poll: GETs
every few milliseconds would load the API server being timed and round up to the poll.
Prints the median of --runs runs, and an excerpt of /metrics at the end (the one in
README.md comes from here). Without --settle the runs start right after the first sync,
while the dev controllers still work through the n new InferenceServices and each cycle
publishes their new statuses (a hook that arrives during a cycle waits for it); with
--settle they start once that is over and each finds the daemon between cycles.

Usage: .venv/bin/python bench/webhook.py --n 50 --runs 9
       .venv/bin/python bench/webhook.py --n 1000 --runs 9 --settle
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
from applied import ISVC, AppliedWatch
from reconcile import ROOT, git, make_repo, model, spread_ms

from gitsync.clients.kube import KubeClient
from gitsync.dev import controlplane

SECRET = "bench-secret"  # noqa: S105 - a throwaway for the bench
EXCERPT = (
    "gitsync_cycles_total",
    "gitsync_cycle_duration_seconds_count",
    "gitsync_objects_total",
    'gitsync_specs{kind="ModelDeployment",phase="Healthy"}',
    "gitsync_git_request_duration_seconds_count",
    "gitsync_kube_requests_total",
    "gitsync_last_applied_revision_info",
    "gitsync_leader",
    "gitsync_webhook_requests_total",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own listener
            return response.status, response.read()
    except OSError:
        return 0, b""


def hook(port: int) -> int:
    body = orjson.dumps({"ref": "refs/heads/main"})
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/github",
        data=body,
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return int(response.status)


def until(condition: Callable[[], bool], *, timeout: float, every: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(every)


def idle(port: int) -> bool:
    """The daemon is between cycles (its /healthz says so)."""
    status, body = get(f"http://127.0.0.1:{port}/healthz")
    return status == 200 and not orjson.loads(body)["busy"]


def cycles(port: int) -> int:
    return int(orjson.loads(get(f"http://127.0.0.1:{port}/healthz")[1])["cycles"])


def settle(kubeconfig: Path, port: int, *, n: int) -> None:
    """Wait until the dev controllers have made all n InferenceServices Ready, then
    let one cycle record that: the runs then meet a daemon in its steady state, not
    one still publishing 1,000 new statuses or still busy when the hook arrives."""
    kube = KubeClient.from_kubeconfig(kubeconfig)

    def ready() -> int:
        items = kube.list(*ISVC, namespace="bench").get("items") or []
        return sum(
            any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (item.get("status") or {}).get("conditions") or []
            )
            for item in items
        )

    try:
        started = time.monotonic()
        until(lambda: ready() == n, timeout=600, every=1.0)
        print(f"controllers settled {n} InferenceServices in {time.monotonic() - started:.0f} s")
    finally:
        kube.close()
    before = cycles(port)
    assert hook(port) == 202
    until(lambda: cycles(port) > before and idle(port), timeout=120, every=0.05)


def run(kubeconfig: Path, tmp: Path, *, n: int, runs: int, settled: bool) -> None:
    remote, work = make_repo(tmp, n)
    port = free_port()
    argv = [
        sys.executable, "-m", "gitsync", "run", "--repo", remote.as_uri(),
        "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp / "cache"),
        "--interval", "300", "--jitter", "0", "--log-level", "warning",
        "--listen", f"127.0.0.1:{port}",
    ]  # fmt: skip
    daemon = subprocess.Popen(argv, env={**os.environ, "GITSYNC_WEBHOOK_SECRET": SECRET})
    watch: AppliedWatch | None = None
    try:
        until(lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200, timeout=180)
        if settled:
            settle(kubeconfig, port, n=n)
        watch = AppliedWatch(kubeconfig, namespace="bench")
        latencies = []
        for index in range(n, n + runs):
            if settled:
                until(lambda: idle(port), timeout=120, every=0.05)
            name = f"model-{index:05d}"
            (work / "models" / f"{name}.yaml").write_text(model(index))
            git("add", "-A", cwd=work)
            git("commit", "-qm", name, cwd=work)
            git("push", "-q", str(remote), "main", cwd=work)
            started = time.monotonic()
            assert hook(port) == 202
            applied = watch.applied(name, f"s3://models/m{index}/v1", timeout=30)
            latencies.append(applied - started)
            time.sleep(0.5)  # let the dev controllers settle before the next
        shown = ", ".join(f"{s * 1000:.0f}" for s in latencies)
        print(f"{n} models: webhook POST -> applied, median (range) of {runs} runs "
              f"{spread_ms(latencies)}; each: {shown} ms")  # fmt: skip
        time.sleep(2)  # a cycle after the last, so its model reads Healthy
        hook(port)
        time.sleep(2)
        _, body = get(f"http://127.0.0.1:{port}/metrics")
        print("--- /metrics excerpt")
        for line in body.decode().splitlines():
            if line.startswith(EXCERPT):
                print(line)
    finally:
        if watch is not None:
            watch.close()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument(
        "--settle",
        action="store_true",
        help="first wait until the controllers made every model Ready and a cycle recorded "
        "it, and before each run until the daemon is between cycles",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitsync-bench-") as scratch:
        tmp = Path(scratch)
        crds = ROOT.parent / "shared" / "crds"
        plane = controlplane.up(
            tmp / "plane", crd_dirs=[crds / "kserve" / "full", crds / "training-operator-v1"]
        )
        try:
            run(plane.kubeconfig, tmp, n=args.n, runs=args.runs, settled=args.settle)
        finally:
            controlplane.down(tmp / "plane")


if __name__ == "__main__":
    main()
