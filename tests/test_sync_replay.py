"""A `gitsync sync` whose inputs are the last settled sync's repeats its report, and
runs in full the moment any input differs (gitsync.replay).

The pure half checks the record's rules in tables; the other half runs `gitsync sync`
as a process against the real API server and a real Git remote, and changes each
input in turn: the live objects (deleted, annotated by someone else), the spec
commit, the status branch, the record itself (corrupted, or another configuration's).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gitsync.clients.git import GitSource
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.errors import NotFoundError
from gitsync.live import ListedSource
from gitsync.reconciler import Reconciler, SyncOptions
from gitsync.replay import Observed, Record, Settled, load, options_key, save, still_holds

from .specrepo import SpecRepo, git
from .test_pipelines import model as pipeline_model
from .test_pipelines import train_job

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OBSERVED = Observed(head="a" * 40, status_head="b" * 40, live="c" * 64)
REPEATED = "inputs unchanged since the last sync: its report repeated"


def settled(**changes: Any) -> Settled:
    fields: dict[str, Any] = {
        "observed": OBSERVED,
        "status_branch": "gitsync/status",
        "kinds": (("serving.kserve.io/v1beta1", "InferenceService"),),
        "wake_at": None,
    }
    return Settled(**{**fields, **changes})


def record(**changes: Any) -> Record:
    fields: dict[str, Any] = {
        "key": "k" * 64,
        "settled": settled(),
        "lines": ((True, "models/b.yaml:3:1: error: ..."), (False, "ModelDeployment x/a: Ready")),
        "exit_code": 1,
    }
    return Record(**{**fields, **changes})


# --- the record's rules -------------------------------------------------------------------


class _Untouchable:
    """A client a record past its wake-up time must not need: any use fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} called: the clock alone decided")


@pytest.mark.parametrize("wake_at", [NOW, NOW - timedelta(minutes=5)])
def test_a_record_past_its_wake_up_does_not_hold_whatever_it_reads(wake_at: datetime) -> None:
    untouchable: Any = _Untouchable()
    past = record(settled=settled(wake_at=wake_at))
    assert not still_holds(past, git=untouchable, kube=untouchable, instance="x", now=NOW)


def test_a_record_is_read_back_as_it_was_saved(tmp_path: Path) -> None:
    saved = record(
        settled=settled(
            wake_at=NOW, observed=Observed(head="a" * 40, status_head=None, live="c" * 64)
        )
    )
    save(tmp_path, saved, key=saved.key)
    assert load(tmp_path, key=saved.key) == saved
    assert load(tmp_path, key="0" * 64) is None  # another configuration's: not found

    save(tmp_path, None, key=saved.key)  # a sync that did not settle leaves none
    assert load(tmp_path, key=saved.key) is None
    assert list(tmp_path.iterdir()) == []


def _saved(tmp_path: Path) -> dict[str, Any]:
    saved = record(settled=settled(wake_at=NOW))
    save(tmp_path, saved, key=saved.key)
    data: dict[str, Any] = orjson.loads((tmp_path / f"{saved.key}.json").read_bytes())
    return data


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda d: {**d, "key": "0" * 64}, id="another key inside"),
        pytest.param(lambda d: {**d, "format": 2}, id="another format"),
        pytest.param(lambda d: {**d, "format": True}, id="a boolean for the format"),
        pytest.param(lambda d: {k: v for k, v in d.items() if k != "live"}, id="a field missing"),
        pytest.param(lambda d: {**d, "head": 7}, id="a number for a commit"),
        pytest.param(lambda d: {**d, "lines": [[1, "x"]]}, id="a number for a stream"),
        pytest.param(lambda d: {**d, "lines": [[True]]}, id="a line without text"),
        pytest.param(lambda d: {**d, "kinds": [["v1"]]}, id="a kind without a name"),
        pytest.param(lambda d: {**d, "exitCode": 2}, id="an exit code a settled sync never has"),
        pytest.param(lambda d: {**d, "exitCode": True}, id="a boolean exit code"),
        pytest.param(lambda d: {**d, "wakeAt": "2026-12-01T12:00:00"}, id="a time without zone"),
        pytest.param(lambda d: {**d, "wakeAt": "soon"}, id="not a time"),
        pytest.param(lambda d: [d], id="not a mapping"),
    ],
)
def test_a_spoiled_record_is_never_used(tmp_path: Path, spoil: Any) -> None:
    data = _saved(tmp_path)
    path = tmp_path / f"{data['key']}.json"
    path.write_bytes(orjson.dumps(spoil(data)))
    assert load(tmp_path, key=data["key"]) is None


def test_a_record_cut_short_is_never_used(tmp_path: Path) -> None:
    data = _saved(tmp_path)
    path = tmp_path / f"{data['key']}.json"
    whole = path.read_bytes()
    for length in (0, 1, len(whole) // 2, len(whole) - 1):
        path.write_bytes(whole[:length])
        assert load(tmp_path, key=data["key"]) is None


def test_the_options_key_changes_with_any_option_and_the_server() -> None:
    options = {"repo": "file:///r", "instance": "a", "shards": 1, "wait_timeout": 0.0}
    key = options_key(options, server="https://127.0.0.1:6443")
    assert key == options_key(dict(reversed(options.items())), server="https://127.0.0.1:6443")
    assert key != options_key({**options, "instance": "b"}, server="https://127.0.0.1:6443")
    assert key != options_key({**options, "wait_timeout": 5.0}, server="https://127.0.0.1:6443")
    assert key != options_key(options, server="https://10.0.0.1:6443")


class _Listing:
    """Just the LIST of a KubeClient: a kind's items, or a kind not served."""

    def __init__(self, served: dict[str, list[dict[str, Any]]]) -> None:
        self.served = served

    def list(self, api_version: str, kind: str, *, label_selector: str) -> dict[str, Any]:
        if kind not in self.served:
            raise NotFoundError(f"the API server does not serve {kind}")
        return {"items": [dict(item) for item in self.served[kind]]}


def _item(name: str, uid: str = "u1", version: str = "10") -> dict[str, Any]:
    return {"metadata": {"namespace": "ml", "name": name, "uid": uid, "resourceVersion": version}}


def _fingerprint(served: dict[str, list[dict[str, Any]]]) -> str | None:
    source = ListedSource(_Listing(served), selector="s")  # type: ignore[arg-type]
    source.objects([("v1", "A"), ("v1", "B")])
    assert source.kinds == (("v1", "A"), ("v1", "B"))
    return source.fingerprint


@pytest.mark.parametrize(
    ("other", "equal"),
    [
        ({"A": [_item("y"), _item("x")], "B": []}, True),  # the order of the listing
        ({"A": [_item("x"), _item("y", version="11")], "B": []}, False),  # written
        ({"A": [_item("x"), _item("y", uid="u2")], "B": []}, False),  # deleted, recreated
        ({"A": [_item("x")], "B": []}, False),  # deleted
        ({"A": [_item("x"), _item("y"), _item("z")], "B": []}, False),  # created
        ({"A": [_item("x"), _item("y")]}, False),  # B no longer served
        ({"A": [], "B": [_item("x"), _item("y")]}, False),  # the same objects, another kind
    ],
)
def test_a_listing_fingerprint_changes_with_any_write(
    other: dict[str, list[dict[str, Any]]], equal: bool
) -> None:
    base = _fingerprint({"A": [_item("x"), _item("y")], "B": []})
    assert (base == _fingerprint(other)) is equal
    assert ListedSource(_Listing({}), selector="s").fingerprint is None  # type: ignore[arg-type]


# --- `gitsync sync` against the API server ------------------------------------------------


def model(name: str, namespace: str, version: int = 1) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "gitsync.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {"team": "risk"}},
            "spec": {
                "model": {"format": "onnx", "storageUri": f"s3://models/{name}/v{version}"},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            },
        }
    )


class Sync:
    """`gitsync sync` of one repo, instance and cache, as a process."""

    def __init__(self, repo: SpecRepo, control_plane: ControlPlane, instance: str, cache: Path):
        self.repo, self.cache = repo, cache
        self.env = {
            **os.environ,
            "GITSYNC_KUBECONFIG": str(control_plane.kubeconfig),
            "GITSYNC_INSTANCE": instance,
        }

    def __call__(self, *extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "gitsync", "sync", "--repo", self.repo.url]
        command += ["--cache-dir", str(self.cache), "--log-level", "info", *extra]
        return subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=120, env=self.env
        )

    def record_files(self) -> list[Path]:
        return sorted((self.cache / "sync").glob("*.json"))


def _report(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if not line.startswith("status commit")]


def _settle(sync: Sync) -> subprocess.CompletedProcess[str]:
    """Sync until the dev controllers have made every predictor ready and a run
    repeats the last one's report; that run."""
    for _ in range(20):
        result = sync()
        assert result.returncode in (0, 1), result.stderr
        if REPEATED in result.stderr and ": Progressing: " not in result.stdout:
            return result
        time.sleep(0.5)
    raise AssertionError(f"never settled:\n{result.stdout}\n{result.stderr}")


@pytest.fixture
def sync(tmp_path: Path, control_plane: ControlPlane, namespace: str) -> Sync:
    repo = SpecRepo(tmp_path / "repo")
    repo.write("models/a.yaml", model("a", namespace))
    repo.write("models/b.yaml", model("b", namespace))
    repo.commit("two models")
    return Sync(repo, control_plane, namespace, tmp_path / "cache")


def test_a_settled_sync_repeats_its_report_and_writes_nothing(
    sync: Sync, kube: KubeClient, namespace: str
) -> None:
    first = sync()
    assert f"InferenceService {namespace}/a: created (new)" in first.stdout
    assert sync.record_files() == []  # it wrote to the cluster: a re-run would not
    # The dev controllers make the predictors ready meanwhile: each status change is a
    # status commit, after which a re-run finds nothing new.
    runs = [sync() for _ in range(2)]
    while REPEATED not in runs[-1].stderr or ": Progressing: " in runs[-1].stdout:
        assert len(runs) < 20, runs[-1].stdout + runs[-1].stderr
        time.sleep(0.5)
        runs.append(sync())
    *_, settled, repeated = runs
    assert "created" not in settled.stdout and "configured" not in settled.stdout
    assert len(sync.record_files()) == 1
    assert "cycle finished" not in repeated.stderr
    assert repeated.returncode == settled.returncode == 0
    assert repeated.stdout.splitlines() == _report(settled)  # all but a commit made then
    assert len(repeated.stdout.splitlines()) == 2

    live = kube.get("serving.kserve.io/v1beta1", "InferenceService", "a", namespace=namespace)
    status_log = sync.repo.log("gitsync/status")
    assert REPEATED in sync().stderr
    again = kube.get("serving.kserve.io/v1beta1", "InferenceService", "a", namespace=namespace)
    assert again is not None and live is not None
    assert again["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
    assert sync.repo.log("gitsync/status") == status_log


def test_a_deleted_object_is_applied_again(sync: Sync, kube: KubeClient, namespace: str) -> None:
    _settle(sync)
    assert kube.delete("serving.kserve.io/v1beta1", "InferenceService", "a", namespace=namespace)
    result = sync()
    assert REPEATED not in result.stderr
    assert f"InferenceService {namespace}/a: created" in result.stdout
    assert kube.get("serving.kserve.io/v1beta1", "InferenceService", "a", namespace=namespace)


def test_an_object_someone_else_wrote_runs_the_cycle(
    sync: Sync, kube: KubeClient, namespace: str
) -> None:
    _settle(sync)
    kube.annotate(
        "serving.kserve.io/v1beta1",
        "InferenceService",
        "b",
        namespace=namespace,
        annotations={"example.com/touched": "yes"},
        field_manager="someone-else",
    )
    result = sync()
    assert REPEATED not in result.stderr and "cycle finished" in result.stderr
    assert result.returncode == 0
    _settle(sync)  # and it settles again on the new state


def test_a_new_commit_is_applied(sync: Sync, namespace: str) -> None:
    _settle(sync)
    sync.repo.write("models/a.yaml", model("a", namespace, version=2))
    sync.repo.commit("a v2")
    result = sync()
    assert REPEATED not in result.stderr
    assert f"InferenceService {namespace}/a: configured" in result.stdout


def test_a_moved_status_branch_runs_the_cycle(sync: Sync, namespace: str) -> None:
    _settle(sync)
    # Someone removes a's status document: the cycle must find it and write it again.
    clone = sync.repo.work.parent / "status-clone"
    git("clone", "-q", "--branch", "gitsync/status", sync.repo.url, str(clone), cwd=sync.repo.work)
    documents = [p for p in clone.rglob("a.yaml") if "ModelDeployment" in p.parts]
    assert len(documents) == 1
    documents[0].unlink()
    git("commit", "-qam", "someone removes a's document", cwd=clone)
    git("push", "-q", "origin", "gitsync/status", cwd=clone)
    result = sync()
    assert REPEATED not in result.stderr and "status commit" in result.stdout
    assert f"/{namespace}/ModelDeployment/a.yaml" in "\n".join(sync.repo.status_files())


def test_a_corrupted_or_foreign_record_runs_the_cycle(sync: Sync, namespace: str) -> None:
    settled_run = _settle(sync)
    [path] = sync.record_files()
    data = orjson.loads(path.read_bytes())
    # A record naming the live state as it is, but claiming another report: never
    # taken, because it is another key's...
    path.write_bytes(orjson.dumps({**data, "key": "0" * 64, "lines": [[False, "forged"]]}))
    foreign = sync()
    assert REPEATED not in foreign.stderr and "forged" not in foreign.stdout
    assert sorted(foreign.stdout.splitlines()) == sorted(settled_run.stdout.splitlines())
    # ...and a record cut short is not either; each full run leaves a whole one again.
    [path] = sync.record_files()
    path.write_bytes(path.read_bytes()[:40])
    cut = sync()
    assert REPEATED not in cut.stderr
    assert sorted(cut.stdout.splitlines()) == sorted(settled_run.stdout.splitlines())
    assert REPEATED in sync().stderr


def test_an_invalid_spec_is_reported_again_with_its_exit_code(sync: Sync, namespace: str) -> None:
    sync.repo.write("models/c.yaml", model("c", namespace).replace("onnx", "onyx"))
    sync.repo.commit("a typo")
    repeated = _settle(sync)
    assert repeated.returncode == 1
    assert "models/c.yaml:10:13: spec.model.format: 'onyx' is not one of" in repeated.stderr
    assert f"ModelDeployment {namespace}/c: Invalid" in repeated.stdout


def test_other_options_never_take_the_record(sync: Sync, namespace: str) -> None:
    _settle(sync)
    other = sync("--status-branch", "gitsync/other")
    assert REPEATED not in other.stderr
    assert "status commit" in other.stdout  # its own branch, written for the first time
    assert len(sync.record_files()) == 2


def test_once_its_wake_up_time_has_come_the_cycle_runs(sync: Sync) -> None:
    _settle(sync)
    [path] = sync.record_files()
    data = orjson.loads(path.read_bytes())
    assert data["wakeAt"] is None  # nothing here waits on the clock
    path.write_bytes(orjson.dumps({**data, "wakeAt": "2999-01-01T00:00:00+00:00"}))
    assert REPEATED in sync().stderr  # not yet
    path.write_bytes(orjson.dumps({**data, "wakeAt": "2000-01-01T00:00:00+00:00"}))
    due = sync()
    assert REPEATED not in due.stderr and "cycle finished" in due.stderr
    assert REPEATED in sync().stderr  # the cycle that ran left its own record


def test_a_status_push_that_lost_a_race_leaves_no_record(
    sync: Sync, kube: KubeClient, namespace: str
) -> None:
    """The push was made again on someone else's newer commit, which the cycle never
    read: a record naming that head would repeat a report that misses their change."""
    _settle(sync)
    repo = sync.repo

    def remove_status_document(name: str) -> None:
        clone = repo.work.parent / f"status-{name}"
        git("clone", "-q", "--branch", "gitsync/status", repo.url, str(clone), cwd=repo.work)
        (document,) = [p for p in clone.rglob(f"{name}.yaml") if "ModelDeployment" in p.parts]
        document.unlink()
        git("commit", "-qam", f"someone removes {name}'s document", cwd=clone)
        git("push", "-q", "origin", "gitsync/status", cwd=clone)

    remove_status_document("a")  # the cycle will write a's document again
    raced: list[str] = []

    def may_write() -> bool:  # asked just before the push: someone else pushes first
        if not raced:
            remove_status_document("b")
            raced.append("b")
        return True

    source = GitSource(repo.url, branch="main", cache_dir=sync.cache / "race-git")
    options = SyncOptions(instance=namespace)
    reconciler = Reconciler(git=source, kube=kube, options=options, may_write=may_write)
    try:
        report = reconciler.cycle()
    finally:
        reconciler.close()
        source.close()
    assert raced and report.status_commit is not None and not report.changes.writes
    assert reconciler.settled is None
    # Without a record, the next sync reads the branch as it is and writes b back.
    after = sync()
    assert REPEATED not in after.stderr and "status commit" in after.stdout


class _RefusingPrometheus(ThreadingHTTPServer):
    """Answers every query 403, as an auth proxy in front of Prometheus may."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.server.asked += 1  # type: ignore[attr-defined]
                body = b"<html>403 Forbidden</html>"
                self.send_response(403)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *_: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.asked = 0


def test_a_failed_gate_query_is_asked_again_by_the_next_sync(
    tmp_path: Path, control_plane: ControlPlane, namespace: str
) -> None:
    prometheus = _RefusingPrometheus()
    threading.Thread(target=prometheus.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{prometheus.server_address[1]}"
    gate = {
        "metric": "auc",
        "min": 0.9,
        "query": 'eval_auc{job_name="{{run}}"}',
        "provider": {"prometheus": {"address": address}},
    }
    repo = SpecRepo(tmp_path / "repo")
    repo.write("train.yaml", train_job(namespace, accuracy=0.95, lr="0.1"))
    source = {"fromTrainingRun": "train", "gates": [gate]}
    repo.write("scorer.yaml", pipeline_model(namespace, "scorer", source))
    repo.commit("a run and a model gated on Prometheus")
    sync = Sync(repo, control_plane, namespace, tmp_path / "cache")
    try:
        for _ in range(30):  # until the run has succeeded and its gate was asked
            result = sync()
            if prometheus.asked:
                break
            time.sleep(0.5)
        asked = prometheus.asked
        assert asked, result.stdout + result.stderr
        assert "403" in result.stdout  # the gate fails, and says why
        again = [sync() for _ in range(2)]
    finally:
        prometheus.shutdown()
    # A refusal may be an auth proxy's or depend on the data: each sync asks again.
    assert all(REPEATED not in run.stderr for run in again)
    assert prometheus.asked == asked + 2
    assert sync.record_files() == []


def test_the_options_key_changes_with_the_shipped_policies_but_not_bytecode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gitsync's shipped policies are a linked folder: a policy edited there is another
    build, whose verdicts the last build's report must not repeat."""
    import gitsync  # noqa: PLC0415 - its __file__ is what is pointed elsewhere

    package, policies = tmp_path / "gitsync", tmp_path / "policies"
    (package / "policy").mkdir(parents=True)
    policies.mkdir()
    (package / "__init__.py").write_text("")
    (policies / "require-team-label.yaml").write_text("spec: {}\n")
    (package / "policy" / "shipped").symlink_to(policies, target_is_directory=True)
    monkeypatch.setattr(gitsync, "__file__", str(package / "__init__.py"))

    key = options_key({"instance": "a"}, server="https://127.0.0.1:6443")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"compiled")
    assert options_key({"instance": "a"}, server="https://127.0.0.1:6443") == key
    (policies / "require-team-label.yaml").write_text("spec: {rules: []}\n")
    assert options_key({"instance": "a"}, server="https://127.0.0.1:6443") != key
