"""Benchmark the dashboard's overview at N specs: page weight and time to first render.

It builds a spec repository of N ModelDeployments (teams and namespaces spread over
them) and a status branch that gitsync's own StatusStore writes (one commit of N
documents, then --commits commits changing ten documents each, for the history),
serves the dashboard from that repository in this process, and loads the overview
in Debian's headless chromium. Figures, each the median of --runs runs:

  * the server: the first request (reading both branches) and a warm render;
  * the page's weight: HTML, gzipped HTML, and the script and stylesheet;
  * in the browser: first contentful paint and DOMContentLoaded of a fresh page.

Usage: .venv/bin/python bench/dashboard.py --n 1000 --runs 5
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from playwright.sync_api import sync_playwright

from gitsync.clients.git import Author, GitSource, Repository
from gitsync.dashboard import Dashboard, RepositorySource
from gitsync.dashboard.serve import make
from gitsync.health import Health, HealthReport
from gitsync.status import build_status
from gitsync.status_document import ModelInfo, StatusDocument, Traffic
from gitsync.status_store import StatusStore

ENV = {
    "GIT_AUTHOR_NAME": "Dana Scientist",
    "GIT_AUTHOR_EMAIL": "dana@example.com",
    "GIT_COMMITTER_NAME": "Dana Scientist",
    "GIT_COMMITTER_EMAIL": "dana@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "PATH": "/usr/bin:/bin",
}
HEALTHS = (Health.HEALTHY,) * 8 + (Health.PROGRESSING, Health.DEGRADED)


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True)


def spec(i: int) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "gitsync.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {
                "name": f"model-{i:04d}",
                "namespace": f"ml-{i % 10}",
                "labels": {"team": f"team-{i % 7}"},
            },
            "spec": {
                "model": {"format": "sklearn", "storageUri": f"s3://models/model-{i:04d}/v1"},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            },
        }
    )


def status(i: int, commit: str, round_: int) -> StatusDocument:
    canary = round_ * 10 % 100 if i % 10 == 8 else 0
    traffic: tuple[Traffic, ...] = (
        Traffic(revision=f"model-{i:04d}-predictor-00001", percent=100 - canary, latest=not canary),
    )
    if canary:
        traffic = (
            Traffic(revision=f"model-{i:04d}-predictor-00002", percent=canary, latest=True),
            *traffic,
        )
    return build_status(
        kind="ModelDeployment",
        name=f"model-{i:04d}",
        namespace=f"ml-{i % 10}",
        instance="bench",
        source=f"models/model-{i:04d}.yaml",
        source_commit=commit,
        now="2026-12-01T12:00:00Z",
        health=HealthReport(HEALTHS[i % len(HEALTHS)], f"serving model-{i:04d} (round {round_})"),
        model=ModelInfo(storage_uri=f"s3://models/model-{i:04d}/v1", traffic=traffic),
    )


def build(root: Path, n: int, commits: int) -> tuple[Path, Callable[[int], None]]:
    remote, work = root / "remote.git", root / "work"
    remote.mkdir()
    git("init", "-q", "--bare", "--initial-branch=main", cwd=remote)
    (work / "models").mkdir(parents=True)
    git("init", "-q", "--initial-branch=main", cwd=work)
    for i in range(n):
        (work / "models" / f"model-{i:04d}.yaml").write_text(spec(i))
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", f"{n} models", cwd=work)
    git("push", "-q", str(remote), "main", cwd=work)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=work, env=ENV, check=True, capture_output=True, text=True
    ).stdout.strip()
    source = GitSource(str(remote), branch="main", cache_dir=root / "cache")
    store = StatusStore(source, author=Author("gitsync", "g@x"), instance="bench")
    store.read("gitsync/status")
    docs = [status(i, head, 0) for i in range(n)]

    def publish(round_: int) -> None:
        """A status commit changing a tenth of the documents."""
        for i in range(round_ % 10, n, max(1, n // 10)):
            docs[i] = status(i, head, round_)
        store.publish(docs, branch="gitsync/status", source_commit=head)

    store.publish(docs, branch="gitsync/status", source_commit=head)
    for round_ in range(1, commits + 1):
        publish(round_)
    return remote, publish


def get(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", path)
    body = connection.getresponse().read()
    connection.close()
    return body


def timed(port: int, path: str) -> float:
    start = time.perf_counter()
    get(port, path)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--commits", type=int, default=20)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("no chromium: run hack/setup")
    with tempfile.TemporaryDirectory() as folder:
        remote, publish = build(Path(folder), args.n, args.commits)
        firsts, warms, updates = [], [], []
        rounds = args.commits
        for _ in range(args.runs):
            source = RepositorySource(
                Repository.open(remote), branch="main", status_branch="gitsync/status"
            )
            server = make(Dashboard(source), listen="127.0.0.1:0")
            port = server.server_address[1]
            threading.Thread(target=server.serve_forever, daemon=True).start()
            firsts.append(timed(port, "/"))
            warms.append(statistics.median(timed(port, "/") for _ in range(5)))
            rounds += 1
            publish(rounds)
            updates.append(timed(port, "/"))
            if len(firsts) < args.runs:
                server.shutdown()
                server.server_close()
        html = get(port, "/")
        script = get(port, "/static/dashboard.js")
        style = get(port, "/static/dashboard.css")
        paints, loads = [], []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium)
            for _ in range(args.runs):
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
                timing = page.evaluate(
                    """() => ({
                        fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime,
                        dcl: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
                        rows: document.querySelectorAll('table.specs tbody tr[data-key]').length,
                    })"""
                )
                assert timing["rows"] == args.n, timing
                paints.append(timing["fcp"])
                loads.append(timing["dcl"])
                page.close()
            browser.close()
        server.shutdown()
        server.server_close()
    lines = [
        f"dashboard overview at {args.n} specs, {args.commits + 1}+ status commits, "
        f"median of {args.runs}:",
        f"  server, first request (both branches): {statistics.median(firsts) * 1000:.0f} ms",
        f"  server, warm render:                  {statistics.median(warms) * 1000:.0f} ms",
        f"  server, after a status commit:        {statistics.median(updates) * 1000:.0f} ms",
        f"  HTML {len(html) / 1024:.0f} KiB ({len(gzip.compress(html)) / 1024:.0f} KiB gzipped), "
        f"script {len(script) / 1024:.1f} KiB, stylesheet {len(style) / 1024:.1f} KiB; "
        "nothing else",
        f"  browser, first contentful paint:      {statistics.median(paints):.0f} ms",
        f"  browser, DOMContentLoaded:            {statistics.median(loads):.0f} ms",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
