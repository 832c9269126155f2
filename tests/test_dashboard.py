"""The dashboard over real HTTP on 127.0.0.1, from a real repository whose status
branch gitsync's own StatusStore wrote."""

from __future__ import annotations

import base64
import gzip
import http.client
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
import yaml

from gitsync.board import BoardData
from gitsync.clients.git import Author, GitSource, Repository
from gitsync.clients.kube import KubeClient
from gitsync.dashboard import BasicAuth, Dashboard, MirrorSource, RepositorySource
from gitsync.dashboard.serve import make
from gitsync.dev.controlplane import ControlPlane
from gitsync.errors import ConfigurationError
from gitsync.health import Health, HealthReport
from gitsync.reconciler import Reconciler, SyncOptions
from gitsync.status import build_status
from gitsync.status_document import Lineage, ModelInfo, RunRecord, Traffic, TrainerProgress
from gitsync.status_store import StatusStore

from .specrepo import SpecRepo, git
from .test_board import board as board_data
from .test_board import doc as board_doc

SCRIPT = "<script>alert('pwned')</script>"


def spec(name: str, *, team: str, uri: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "gitsync.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": "ml", "labels": {"team": team}},
            "spec": {
                "model": {"format": "sklearn", "storageUri": uri},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            },
        }
    )


class Repo:
    """A spec repo whose status branch a real StatusStore writes."""

    def __init__(self, root: Path) -> None:
        self.specs = SpecRepo(root / "repo")
        self.specs.write("fraud.yaml", spec("fraud", team="risk", uri="s3://m/fraud/v7"))
        self.specs.write("churn.yaml", spec("churn", team="growth", uri="s3://m/churn/v1"))
        self.commit = self.specs.commit(f"models {SCRIPT}")
        self.source = GitSource(self.specs.url, branch="main", cache_dir=root / "cache")
        self.store = StatusStore(self.source, author=Author("gitsync", "g@x"), instance="prod")
        self.store.read("gitsync/status")

    def publish(self, **messages: tuple[Health, str]) -> str:
        statuses = [
            build_status(
                kind="ModelDeployment",
                name=name,
                namespace="ml",
                instance="prod",
                source=f"{name}.yaml",
                source_commit=self.commit,
                now="2026-12-01T12:00:00Z",
                health=HealthReport(health, message),
                model=ModelInfo(
                    storage_uri=f"https://user:hunter2@models.example/{name}",
                    traffic=(Traffic(revision=f"{name}-00001", percent=100, latest=True),),
                ),
            )
            for name, (health, message) in sorted(messages.items())
        ]
        commit = self.store.publish(statuses, branch="gitsync/status", source_commit=self.commit)
        assert commit is not None
        return commit


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    made = Repo(tmp_path)
    made.publish(fraud=(Health.HEALTHY, "serving fraud-00001"), churn=(Health.DEGRADED, SCRIPT))
    yield made
    made.source.close()


@contextmanager
def served(
    path: Path,
    *,
    auth: BasicAuth | None = None,
    instance: str | None = None,
    hosts: frozenset[str] | None = None,
) -> Iterator[int]:
    source = RepositorySource(
        Repository.open(path), branch="main", status_branch="gitsync/status", instance=instance
    )
    server = make(Dashboard(source, auth=auth, hosts=hosts), listen="127.0.0.1:0")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def request(
    port: int, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read().decode()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def test_overview_lists_specs_with_phase_version_team_and_last_change(repo: Repo) -> None:
    with served(repo.specs.remote) as port:
        status, headers, body = request(port, "/")
        assert status == 200
        assert headers["content-type"] == "text/html; charset=utf-8"
        rows = re.findall(r'<tr data-key="([^"]+)">(.*?)</tr>', body, re.S)
        assert [key for key, _ in rows] == [
            "prod/ml/ModelDeployment/churn",
            "prod/ml/ModelDeployment/fraud",
        ]
        fraud = rows[1][1]
        assert "Healthy" in fraud
        assert "team risk" in fraud
        assert "fraud-00001</span> 100%" in fraud
        assert f"<code>{repo.commit[:7]}</code> Dana Scientist" in fraud
        assert "Degraded" in rows[0][1]

        status, _, filtered = request(port, "/?team=growth&phase=Degraded")
        assert status == 200
        assert re.findall(r'<tr data-key="([^"]+)"', filtered) == ["prod/ml/ModelDeployment/churn"]
        assert '<option value="growth" selected>' in filtered

        status, _, page = request(port, "/spec/prod/ml/ModelDeployment/fraud")
        assert status == 200
        assert "serving fraud-00001" in page
        assert '<h2 id="history-title">History</h2>' in page

        assert request(port, "/spec/prod/ml/ModelDeployment/nope")[0] == 404
        assert request(port, "/cycles")[0] == 200


def test_git_text_is_escaped_and_credentials_are_not_shown(repo: Repo) -> None:
    with served(repo.specs.remote) as port:
        pages = [
            request(port, path)[2]
            for path in ("/", "/spec/prod/ml/ModelDeployment/churn", "/cycles")
        ]
    for body in pages:
        assert "<script>alert" not in body
        assert "hunter2" not in body
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in pages[0]  # the commit message
    assert "&lt;script&gt;" in pages[1]  # the status message
    # The only scripts are the package's own file.
    assert re.findall(r"<script[^>]*>", pages[0]) == ['<script src="/static/dashboard.js" defer>']


def test_every_response_carries_the_security_headers(repo: Repo) -> None:
    with served(repo.specs.remote) as port:
        for path in ("/", "/static/dashboard.js", "/nope", "/api/overview.json"):
            _, headers, _ = request(port, path)
            csp = headers["content-security-policy"]
            assert "default-src 'self'" in csp
            assert "script-src 'self'" in csp
            assert "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_it_is_read_only(repo: Repo, method: str) -> None:
    with served(repo.specs.remote) as port:
        status, headers, _ = request(port, "/", method=method)
    assert status == 405
    assert headers["allow"] == "GET, HEAD"


def test_head_answers_without_a_body(repo: Repo) -> None:
    with served(repo.specs.remote) as port:
        status, headers, body = request(port, "/", method="HEAD")
    assert (status, body) == (200, "")
    assert int(headers["content-length"]) > 0


@pytest.mark.parametrize(
    "path",
    [
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/static//etc/passwd",
        "/static/",
        "/static/templates/base.html",
        "/static/../templates/base.html",
    ],
)
def test_static_files_are_only_the_shipped_ones(repo: Repo, path: str) -> None:
    with served(repo.specs.remote) as port:
        status, _, body = request(port, path)
    assert status == 404
    assert "import" not in body and "<html" not in body


def test_static_files_are_served_with_their_types(repo: Repo) -> None:
    with served(repo.specs.remote) as port:
        js = request(port, "/static/dashboard.js")
        css = request(port, "/static/dashboard.css")
    assert (js[0], js[1]["content-type"]) == (200, "text/javascript; charset=utf-8")
    assert (css[0], css[1]["content-type"]) == (200, "text/css; charset=utf-8")
    assert "If-None-Match" in js[2]
    # Offline: nothing is loaded from anywhere else.
    assert "url(" not in css[2]


def test_etag_is_the_branches_commits_and_304_until_a_status_commit(repo: Repo) -> None:
    with served(repo.specs.remote) as port:
        _, headers, _ = request(port, "/")
        etag = headers["etag"]
        status, again, body = request(port, "/", headers={"If-None-Match": etag})
        assert (status, body, again["etag"]) == (304, "", etag)

        status_commit = repo.publish(
            fraud=(Health.PROGRESSING, "canary at 20%"), churn=(Health.DEGRADED, SCRIPT)
        )
        status, fresh, body = request(port, "/", headers={"If-None-Match": etag})
        assert status == 200
        assert fresh["etag"] != etag
        assert status_commit[:16] in fresh["etag"]
        assert "canary at 20%" in body
        assert (
            request(port, "/api/overview.json", headers={"If-None-Match": fresh["etag"]})[0] == 304
        )


def test_the_json_overview_follows_the_filters(repo: Repo) -> None:
    with served(repo.specs.remote) as port:
        status, headers, body = request(port, "/api/overview.json?team=risk")
    assert (status, headers["content-type"]) == (200, "application/json")
    data = orjson.loads(body)
    assert [(s["name"], s["phase"], s["team"]) for s in data["specs"]] == [
        ("fraud", "Healthy", "risk")
    ]
    assert data["total"] == 2
    assert "hunter2" not in body


def test_oversized_and_overfull_requests_are_refused(repo: Repo) -> None:
    with served(repo.specs.remote) as port:
        assert request(port, "/?q=" + "x" * 3000)[0] == 414
        assert request(port, "/?" + "&".join(f"a{i}=1" for i in range(40)))[0] == 400
        assert request(port, "/" + "a" * 2000)[0] == 414


def test_basic_auth_when_configured(repo: Repo, tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("# readers\nann:s3cret\n\nbob:pa:ss\n")
    auth = BasicAuth.from_file(users)

    def basic(credentials: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}

    with served(repo.specs.remote, auth=auth) as port:
        status, headers, body = request(port, "/")
        assert status == 401
        assert headers["www-authenticate"].startswith("Basic ")
        assert "fraud" not in body
        assert request(port, "/static/dashboard.js")[0] == 401
        assert request(port, "/", headers=basic("ann:wrong"))[0] == 401
        assert request(port, "/", headers={"Authorization": "Basic !!!"})[0] == 401
        assert request(port, "/", headers={"Authorization": "Bearer x"})[0] == 401
        assert request(port, "/", headers=basic("ann:s3cret"))[0] == 200
        assert request(port, "/", headers=basic("bob:pa:ss"))[0] == 200


@pytest.mark.parametrize("content", ["", "# nobody\n", "ann\n", ":pw\n"])
def test_an_auth_file_without_users_is_an_error_that_does_not_echo_it(
    tmp_path: Path, content: str
) -> None:
    users = tmp_path / "users"
    users.write_text(content)
    with pytest.raises(ConfigurationError) as caught:
        BasicAuth.from_file(users)
    assert str(users) in str(caught.value)
    assert "ann" not in str(caught.value)


def test_the_cli_serves_a_clone_and_a_missing_status_branch_is_not_an_error(
    tmp_path: Path,
) -> None:
    specs = SpecRepo(tmp_path / "repo")
    specs.write("fraud.yaml", spec("fraud", team="risk", uri="s3://m/v1"))
    specs.commit("fraud")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gitsync",
            "dashboard",
            "--repo",
            str(specs.work),
            "--listen",
            "127.0.0.1:0",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("GITSYNC_")},
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert found, line
        status, _, body = request(int(found.group(1)), "/")
        assert status == 200
        assert "No status branch yet" in body
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_large_pages_are_gzipped_for_clients_that_accept_it(repo: Repo) -> None:
    with served(repo.specs.remote) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/", headers={"Accept-Encoding": "gzip"})
        response = connection.getresponse()
        body = response.read()
        connection.close()
        plain = request(port, "/")
    assert response.getheader("Content-Encoding") == "gzip"
    assert response.getheader("Vary") == "Accept-Encoding"
    # The two pages are rendered apart: "0s ago" may have become "1s ago" meanwhile.
    assert _ages_masked(gzip.decompress(body).decode()) == _ages_masked(plain[2])
    assert "content-encoding" not in plain[1]


def _ages_masked(page: str) -> str:
    return re.sub(r">[^<]* ago</time>", "> ago</time>", page)


def test_the_daemons_mirror_serves_the_same_pages(repo: Repo) -> None:
    """What the listener mounts: the daemon's bare mirror, whose branches are
    remote-tracking refs, opened apart from the daemon's own handle."""
    repo.source.fetch()
    with served(repo.source.path) as port:
        status, _, body = request(port, "/")
    assert status == 200
    assert re.findall(r'<tr data-key="([^"]+)"', body) == [
        "prod/ml/ModelDeployment/churn",
        "prod/ml/ModelDeployment/fraud",
    ]
    assert "team risk" in body  # the spec branch was found too


def test_one_instance_of_a_shared_branch(repo: Repo, tmp_path: Path) -> None:
    source = GitSource(repo.specs.url, branch="main", cache_dir=tmp_path / "staging")
    store = StatusStore(source, author=Author("gitsync", "g@x"), instance="staging")
    store.read("gitsync/status")
    staged = build_status(
        kind="ModelDeployment",
        name="fraud",
        namespace="ml",
        instance="staging",
        source="fraud.yaml",
        source_commit=repo.commit,
        now="2026-12-01T12:00:00Z",
        health=HealthReport(Health.FAILED, "staging says no"),
    )
    assert store.publish([staged], branch="gitsync/status", source_commit=repo.commit)
    source.close()
    with served(repo.specs.remote) as port:
        both = request(port, "/")[2]
    with served(repo.specs.remote, instance="prod") as port:
        prod, cycles = request(port, "/")[2], request(port, "/cycles")[2]
    assert "staging/ml/ModelDeployment/fraud" in both
    assert "staging" not in prod.replace('name="instance"', "")
    assert "/spec/staging/" not in cycles
    assert "/spec/prod/ml/ModelDeployment/fraud" in cycles


def test_an_unreadable_status_branch_is_a_503_page_not_a_crash(repo: Repo) -> None:
    remote = repo.specs.remote
    missing_tree = "1" * 40
    commit = (
        f"tree {missing_tree}\nauthor gitsync <g@x> 1764590400 +0000\n"
        "committer gitsync <g@x> 1764590400 +0000\n\nbroken\n"
    )
    broken = subprocess.run(
        ["git", "hash-object", "-t", "commit", "--literally", "-w", "--stdin"],
        cwd=remote,
        input=commit,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The branch names a commit whose tree is not in the repository.
    git("update-ref", "refs/heads/gitsync/status", broken, cwd=remote)
    with served(remote) as port:
        status, headers, body = request(port, "/")
        assert status == 503
        assert "the status branch cannot be read" in body
        assert "etag" not in headers
        assert request(port, "/static/dashboard.css")[0] == 200  # the server lives on


def test_a_token_in_a_commit_message_is_not_shown(repo: Repo) -> None:
    repo.specs.write("fraud.yaml", spec("fraud", team="risk", uri="s3://m/fraud/v8"))
    repo.specs.commit("v8 from https://ann:ghp_secret123@git.example/models")
    with served(repo.specs.remote) as port:
        pages = [request(port, p)[2] for p in ("/", "/spec/prod/ml/ModelDeployment/fraud")]
    for body in pages:
        assert "ghp_secret123" not in body
        assert "https://***@git.example/models" in body


def test_on_loopback_only_its_own_names_are_answered(repo: Repo) -> None:
    with served(repo.specs.remote, hosts=frozenset({"127.0.0.1", "localhost"})) as port:
        assert request(port, "/")[0] == 200  # Host: 127.0.0.1:<port>
        assert request(port, "/", headers={"Host": f"localhost:{port}"})[0] == 200
        status, _, body = request(port, "/", headers={"Host": f"evil.example:{port}"})
        assert (status, body) == (400, "unexpected Host header\n")
        assert request(port, "/api/overview.json", headers={"Host": "evil.example"})[0] == 400


def test_handle_gives_a_complete_response_for_a_listener_to_send(repo: Repo) -> None:
    """The listener's handler calls handle() and sends what it returns as it is."""
    source = RepositorySource(
        Repository.open(repo.specs.remote), branch="main", status_branch="gitsync/status"
    )
    app = Dashboard(source)
    response = app.handle(method="GET", path="/", query="", headers={"accept-encoding": "gzip"})
    headers = dict(response.headers)
    assert (response.status, response.reason) == (200, "OK")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Encoding"] == "gzip"
    assert int(headers["Content-Length"]) == len(response.body)
    assert b"fraud" in gzip.decompress(response.body)
    refused = app.handle(method="POST", path="/", query="", headers={})
    assert (refused.status, dict(refused.headers)["Allow"]) == (405, "GET, HEAD")
    assert "Content-Security-Policy" in dict(refused.headers)


def test_the_pipelines_page_draws_each_chain_and_escapes_git(repo: Repo) -> None:
    staging = board_doc(
        "staging",
        model=ModelInfo(
            storage_uri="s3://m/run-1",
            from_training_run=Lineage(
                name="train", run="run-1", evidence=("accuracy 0.95 >= 0.9",)
            ),
        ),
    )
    production = board_doc(
        "production",
        health=Health.PENDING,
        message=f"waiting to promote: {SCRIPT}",
        model=ModelInfo(
            from_training_run=Lineage(
                name="ModelDeployment ml/staging", promoted_from="ModelDeployment ml/staging"
            )
        ),
    )

    class Fixed:
        def current(self) -> BoardData:
            return board_data(staging, production)

    response = Dashboard(Fixed()).handle(method="GET", path="/pipelines", query="", headers={})
    page = response.body.decode()
    assert response.status == 200
    assert page.index("TrainingRun ml/train") < page.index("ModelDeployment ml/staging")
    assert page.index("ModelDeployment ml/staging</a>") < page.index(
        "ModelDeployment ml/production"
    )
    assert "accuracy 0.95 &gt;= 0.9" in page
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_a_training_run_page_shows_what_the_trainer_reported(repo: Repo) -> None:
    run = RunRecord(
        name="train-abc",
        phase="Running",
        trainer_status=TrainerProgress(
            progress_percentage=40, metrics={"accuracy": "0.94", "loss": SCRIPT}
        ),
    )
    train = board_doc("train", kind="TrainingRun", health=Health.RUNNING, runs=(run,))

    class Fixed:
        def current(self) -> BoardData:
            return board_data(train)

    path = f"/spec/{train.path.removeprefix('status/').removesuffix('.yaml')}"
    response = Dashboard(Fixed()).handle(method="GET", path=path, query="", headers={})
    page = response.body.decode()
    assert response.status == 200, page
    assert '<span class="replica">40%</span>' in page
    assert '<span class="replica">accuracy 0.94</span>' in page
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_the_daemons_dashboard_reads_the_status_branch_its_gitsync_yaml_names(
    tmp_path: Path, control_plane: ControlPlane, namespace: str
) -> None:
    specs = SpecRepo(tmp_path / "repo")
    specs.write(
        "gitsync.yaml", f"statusBranch: audit/models\ndefaults: {{namespace: {namespace}}}\n"
    )
    specs.write("fraud.yaml", spec("fraud", team="risk", uri="s3://m/fraud/v7"))
    specs.commit("status on a branch of the team's naming")
    kube = KubeClient.from_kubeconfig(control_plane.kubeconfig)
    git_source = GitSource(specs.url, branch="main", cache_dir=tmp_path / "cache")
    reconciler = Reconciler(git=git_source, kube=kube, options=SyncOptions(instance="prod"))
    try:
        assert reconciler.status_branch == "gitsync/status"  # before any cycle: the default
        reconciler.cycle()
        assert reconciler.status_branch == "audit/models"
        pages = MirrorSource(
            reconciler.mirror, branch="main", status_branch=lambda: reconciler.status_branch
        )
        data = pages.current()
        assert data.status_commit == git("rev-parse", "audit/models", cwd=specs.remote)
        assert [d.name for d in data.documents.values()] == ["fraud"]
    finally:
        reconciler.close()
        kube.close()
        git_source.close()
