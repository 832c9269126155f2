"""The dashboard in a real headless Chromium (Debian's, driven by Playwright),
against a running ``gitsync run`` on the session's real API server.

Few and slow-ish on purpose: one daemon and one browser for the module. The page is
never reloaded by the test after it opens: what changes, changes by the page's own
polling.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, Page, sync_playwright

from gitsync.clients.git import Repository
from gitsync.dashboard import Dashboard, RepositorySource
from gitsync.dashboard.serve import make
from gitsync.dev.controlplane import ControlPlane

from .conftest import daemon_argv
from .specrepo import SpecRepo
from .test_canary import canary_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "repo"
SCRIPT = "<script>window.pwned = 1</script>"


def chromium_path() -> str:
    found = os.environ.get("GITSYNC_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("no chromium (hack/setup installs Debian's; or set GITSYNC_CHROMIUM)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path())
        yield launched
        launched.close()


def serve(path: Path) -> tuple[str, Callable[[], None]]:
    """The dashboard of the repository at ``path``, polled every half second."""
    source = RepositorySource(Repository.open(path), branch="main", status_branch="gitsync/status")
    server = make(Dashboard(source, poll_seconds=0.5), listen="127.0.0.1:0")
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_address[1]}", stop


def daemon(repo: SpecRepo, plane: ControlPlane, folder: Path) -> subprocess.Popen[bytes]:
    argv = daemon_argv(
        repo_url=repo.url,
        instance=f"dash-{uuid.uuid4().hex[:6]}",
        kubeconfig=plane.kubeconfig,
        cache=folder / "cache",
        interval=0.5,
        level="warning",
    )
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def phases(page: Page) -> dict[str, str]:
    """Each listed spec, as namespace/kind/name (a name alone is not unique: the
    examples' TrainingRun and its two models are all support-llm), and the phase the
    page shows for it."""
    rows = page.locator("table.specs tbody tr[data-key]")
    shown = {}
    for i in range(rows.count()):
        row = rows.nth(i)
        key = str(row.get_attribute("data-key")).split("/", 1)[1]  # without the instance
        shown[key] = row.locator(".phase").first.inner_text()
    return shown


def wait_for(check: Callable[[], bool], what: str, page: Page, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"the page never showed {what}; it shows:\n{page.inner_text('main')}")
        time.sleep(0.2)


def test_the_overview_of_the_examples_is_live_and_escapes_git(
    browser: Browser, control_plane: ControlPlane, tmp_path: Path
) -> None:
    repo = SpecRepo(tmp_path / "repo")
    texts = {
        # Namespaces of their own, so other tests' examples never meet these; and
        # production's promotion hold cut to seconds, so the pipeline walks here.
        str(path.relative_to(EXAMPLES)): re.sub(
            r"\bhealthyFor: \w+",
            "healthyFor: 2s",
            re.sub(r"\bml-(serving|training|nlp|staging)\b", r"dash-ml-\1", path.read_text()),
        )
        for path in sorted(EXAMPLES.rglob("*.yaml"))
    }
    for path, text in texts.items():
        repo.write(path, text)
    repo.commit(f"the examples {SCRIPT}")
    default_namespace = yaml.safe_load(texts["gitsync.yaml"])["defaults"]["namespace"]
    url, stop_serving = serve(repo.remote)
    process = daemon(repo, control_plane, tmp_path)
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    try:
        page.goto(url + "/")
        page.evaluate("window.loadedOnce = 'yes'")
        # Every example settles: a training run Succeeds, everything else is Healthy
        # (the pipeline's models once the run passed staging's gates and staging
        # held for production's hold).
        expected = {
            "/".join(
                (
                    doc["metadata"].get("namespace", default_namespace),
                    doc["kind"],
                    doc["metadata"]["name"],
                )
            ): ("Succeeded" if doc["kind"] == "TrainingRun" else "Healthy")
            for text in texts.values()
            for doc in yaml.safe_load_all(text)
            if isinstance(doc, dict) and "metadata" in doc and doc.get("kind") != "Policy"
        }
        assert len(expected) >= 14
        wait_for(lambda: phases(page) == expected, f"the examples' phases {expected}", page)
        # The phases are the branch's: each one as its status document says.
        for key, phase in expected.items():
            namespace, kind, name = key.split("/")
            assert f"phase: {phase}" in repo.status_document(namespace, kind, name)

        # The commit message is text on the page, and its script never ran.
        summaries = page.locator("table.specs tbody tr .meta").all_inner_texts()
        assert any(SCRIPT in text for text in summaries), summaries
        assert page.evaluate("window.pwned") is None
        assert dialogs == []

        # A new model version lands on the page by itself.
        fraud = "models/fraud-detector.yaml"
        repo.write(fraud, (repo.work / fraud).read_text().replace("/v7", "/v8"))
        repo.commit("fraud-detector v8")
        row = page.locator("tr[data-key$='/ModelDeployment/fraud-detector']")
        wait_for(lambda: "s3://models/fraud-detector/v8" in row.inner_text(), "model v8", page)
        wait_for(lambda: "fraud-detector v8" in row.inner_text(), "the v8 commit", page)
        assert page.evaluate("window.loadedOnce") == "yes"  # never reloaded

        # The keyboard reaches the content first; a phone's width needs no sideways scroll.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.set_viewport_size({"width": 390, "height": 800})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        page.close()
        stop(process)
        stop_serving()


def test_a_canary_moves_step_by_step_and_a_rollback_shows_its_evidence(
    browser: Browser,
    control_plane: ControlPlane,
    prometheus_url: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    repo = SpecRepo(tmp_path / "repo")
    repo.write("models/fraud.yaml", canary_model(namespace, prometheus_url, version=1))
    repo.commit("fraud v1")
    url, stop_serving = serve(repo.remote)
    process = daemon(repo, control_plane, tmp_path)
    page = browser.new_page()
    try:
        page.goto(url + "/")
        row = page.locator("tr[data-key$='/ModelDeployment/fraud']")
        wait_for(lambda: row.count() == 1 and "Healthy" in row.inner_text(), "v1 healthy", page)
        row.locator("th a").click()
        page.wait_for_selector("h1:has-text('fraud')")
        page.evaluate("window.loadedOnce = 'yes'")

        repo.write("models/fraud.yaml", canary_model(namespace, prometheus_url, version=2))
        repo.commit("fraud v2")
        seen: list[str] = []
        rollout = page.locator("#rollout")

        def promoted() -> bool:
            shown = page.locator(".canary-traffic")
            if shown.count():
                value = shown.inner_text()
                if not seen or seen[-1] != value:
                    seen.append(value)
            # v1's rollout was Promoted too: done once the canary went past 60%.
            return "60%" in seen and seen[-1] == "100%" and "Promoted" in rollout.inner_text()

        wait_for(promoted, "the canary promoted", page, seconds=90)
        # Every step shown as it happened, in order, on the page that never reloaded.
        assert "20%" in seen and "60%" in seen, seen
        assert seen.index("20%") < seen.index("60%"), seen
        steps = page.locator("ol.timeline li").all_inner_texts()  # newest first
        assert "Promoted" in steps[0], steps
        assert {"20%", "60%", "100%"} <= {s.split()[0] for s in steps}, steps
        assert page.evaluate("window.loadedOnce") == "yes"

        # v3 fails half its requests: the rollback and its evidence show up.
        bad = yaml.safe_load(canary_model(namespace, prometheus_url, version=3))
        bad["metadata"]["annotations"]["dev.gitsync.io/error-rate"] = "0.5"
        repo.write("models/fraud.yaml", yaml.safe_dump(bad))
        repo.commit("fraud v3")
        wait_for(lambda: "RolledBack" in rollout.inner_text(), "the rollback", page, seconds=90)
        evidence = page.locator("#rollout .evidence").first.inner_text()
        assert "error-rate" in evidence and ">" in evidence, evidence
        assert page.evaluate("window.loadedOnce") == "yes"
    finally:
        page.close()
        stop(process)
        stop_serving()
