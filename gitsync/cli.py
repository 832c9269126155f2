"""The ``gitsync`` command line: parses options and wires modules together, nothing more.

Every option can also come from a ``GITSYNC_<OPTION>`` environment variable
(``--repo`` from ``GITSYNC_REPO``; ``--crds`` from ``GITSYNC_CRDS_DIR``, a
``:``-separated list; ``--kubeconfig`` also from ``KUBECONFIG``).
"""

from __future__ import annotations

import io
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from gitsync import __version__, audit
from gitsync.diff import Action
from gitsync.errors import ConfigurationError, GitsyncError
from gitsync.evaluation import Evaluation, Evaluator, spec_objects
from gitsync.health import assess
from gitsync.history import SpecInfo, timelines
from gitsync.loading import Severity
from gitsync.plan import make_plan
from gitsync.policy import PolicySet, verdict_lines
from gitsync.redact import redact
from gitsync.render import RenderContext
from gitsync.rollout import COMMAND_ANNOTATION
from gitsync.snapshot import Snapshot, read_folder, read_snapshot
from gitsync.specs import json_schema
from gitsync.status import status_path
from gitsync.status_document import StatusDocument, status_json_schema
from gitsync.types import ObjectRef, parse_resource

if TYPE_CHECKING:
    # Imported where used: the Kubernetes client alone takes longer to import than
    # `gitsync validate` takes to run, and pygit2 and structlog are not free either.
    from gitsync.clients.git import Repository
    from gitsync.clients.kube import KubeClient
    from gitsync.reconciler import Reconciler

__all__ = ["main"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _option(flag: str, *names: str, **settings: Any) -> Callable[[_F], _F]:
    """A click option that can also be set as GITSYNC_<FLAG> in the environment."""
    settings.setdefault("envvar", "GITSYNC_" + flag.removeprefix("--").upper().replace("-", "_"))
    settings.setdefault("show_envvar", True)
    return click.option(flag, *names, **settings)


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gitsync")
def cli() -> None:
    """GitOps for ML: reconcile model deployments and training runs from Git."""


@cli.group()
def dev() -> None:
    """A local Kubernetes control plane (real kube-apiserver + etcd) for development."""


_DIR_OPTION = _option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".gitsync-dev"),
    show_default=True,
    help="Folder holding the control plane's state, certificates, data and logs.",
)


@dev.command("build")
def dev_build() -> None:
    """Build (or find) kube-apiserver and etcd; print the folder holding them."""
    from gitsync.dev.binaries import ensure_binaries  # noqa: PLC0415

    binaries = ensure_binaries(progress=_echo_err)
    click.echo(str(binaries.kube_apiserver.parent))


@dev.command("up")
@_DIR_OPTION
@_option(
    "--crds",
    "crd_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="GITSYNC_CRDS_DIR",
    help="Folder of CRD YAML files to install (repeatable).",
)
@_option(
    "--controllers/--no-controllers",
    default=True,
    show_default=True,
    help="Start the dev controllers that simulate KServe and the Training Operator.",
)
@_option(
    "--prometheus/--no-prometheus",
    default=False,
    show_default=True,
    help="Also start Prometheus, scraping the dev controllers' synthetic request metrics.",
)
def dev_up(folder: Path, crd_dirs: tuple[Path, ...], controllers: bool, prometheus: bool) -> None:
    """Start etcd, kube-apiserver, the CRDs and the dev controllers (idempotent)."""
    from gitsync.dev import controlplane  # noqa: PLC0415 - keeps `gitsync --help` fast

    started = time.monotonic()
    plane = controlplane.up(
        folder,
        crd_dirs=list(crd_dirs),
        controllers=controllers,
        prometheus=prometheus,
        progress=_echo_err,
    )
    if plane.prometheus_url:
        _echo_err(f"prometheus on {plane.prometheus_url}")
    _echo_err(f"control plane {plane.version} ready in {time.monotonic() - started:.1f}s")
    click.echo(f"export KUBECONFIG={plane.kubeconfig}")


@dev.command("down")
@_DIR_OPTION
def dev_down(folder: Path) -> None:
    """Stop every process that `dev up` started in this folder."""
    from gitsync.dev import controlplane  # noqa: PLC0415

    stopped = controlplane.down(folder)
    if stopped:
        click.echo("stopped " + ", ".join(c.value for c in stopped))
    else:
        click.echo("nothing was running")


@dev.command("status")
@_DIR_OPTION
def dev_status(folder: Path) -> None:
    """Say what runs. Exit 0 when everything runs, 3 when something does not."""
    from gitsync.dev import controlplane  # noqa: PLC0415

    rows = controlplane.status(folder)
    for row in rows:
        state = f"running (pid {row.pid})" if row.running else "stopped"
        endpoint = f"  {row.endpoint}" if row.endpoint and row.running else ""
        click.echo(f"{row.component.value:<16} {state}{endpoint}")
    if not all(row.running for row in rows):
        sys.exit(3)


# --- validate ---------------------------------------------------------------------------


@cli.command()
@click.argument(
    "path", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path(".")
)
@_option("--format", "output", type=click.Choice(["text", "json"]), default="text")
def validate(path: Path, output: str) -> None:
    """Validate the specs in PATH (a spec folder) against their schemas and policies.

    Exit 0 when valid (policy warnings are printed), 1 otherwise.
    """
    snap = read_folder(path)
    evaluation = _evaluate(snap, instance="validate", source_commits={})
    loaded = evaluation.loaded
    diagnostics = [*snap.config_diagnostics, *loaded.diagnostics]
    warnings = [
        *snap.policy_warnings,
        *(d for d in evaluation.verdicts.diagnostics if d.severity is Severity.WARNING),
    ]
    if output == "json":
        click.echo(
            orjson.dumps(
                {
                    "valid": not diagnostics,
                    "specs": len(loaded.entries),
                    "errors": [d.as_dict() for d in diagnostics],
                    "warnings": [d.as_dict() for d in warnings],
                },
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
    else:
        for diagnostic in [*diagnostics, *warnings]:
            click.echo(str(diagnostic))
        files_count = len(snap.blobs)
        verdict = "valid" if not diagnostics else f"{len(diagnostics)} error(s)"
        _echo_err(
            f"{files_count} file(s), {len(loaded.entries)} object(s), "
            f"{len(snap.policies.policies)} policies: {verdict}"
        )
    sys.exit(1 if diagnostics else 0)


@cli.command()
@_option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    help="A local clone (the pull request's checkout).",
)
@_option("--base", required=True, help="Base revision: a branch, tag, sha or HEAD~1.")
@_option("--head", default="HEAD", show_default=True)
@_option("--path", "subdir", default="", help="Spec folder inside the repo.")
@_option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="GITSYNC_KUBECONFIG",
    help="Compare with the live cluster by server-side dry-run; without it, with the base.",
)
@_option("--context", "kube_context", default=None)
@_option("--instance", default="default", show_default=True)
@_option("--format", "output", type=click.Choice(["markdown", "json"]), default="markdown")
def plan(
    *,
    repo: Path,
    base: str,
    head: str,
    subdir: str,
    kubeconfig: Path | None,
    kube_context: str | None,
    instance: str,
    output: str,
) -> None:
    """Say what merging HEAD into BASE would do. Exit 0 no change, 2 changes, 1 errors."""
    from gitsync.clients.git import Repository  # noqa: PLC0415 - see TYPE_CHECKING above

    repository = Repository.open(repo)
    snapshots = [
        read_snapshot(repository, repository.resolve(rev), root=subdir) for rev in (base, head)
    ]
    before, after = snapshots
    commits = [repository.last_changes(snap.commit, list(snap.blobs)).by_path for snap in snapshots]
    # The base as it renders, judged by no policy: only the head's changes are judged.
    base_specs = _evaluate(
        before, instance=instance, source_commits=commits[0], policies=PolicySet(())
    )
    head_specs = _evaluate(
        after,
        instance=instance,
        source_commits=commits[1],
        old_objects=spec_objects(
            before.loaded.entries, default_namespace=before.config.defaults.namespace
        ),
    )
    loaded = head_specs.loaded
    diagnostics = [*after.config_diagnostics, *loaded.diagnostics]
    live = None
    if kubeconfig is not None:
        from gitsync.apply import dry_run_views  # noqa: PLC0415 - see TYPE_CHECKING above
        from gitsync.clients.kube import KubeClient  # noqa: PLC0415 - see TYPE_CHECKING above

        kube = KubeClient.from_kubeconfig(kubeconfig, context=kube_context)
        try:
            live = dry_run_views(kube, head_specs.pairs(), diagnostics)
        finally:
            kube.close()
    result = make_plan(
        base_commit=before.commit,
        head_commit=after.commit,
        base=base_specs.pairs(),
        head=head_specs.pairs(),
        default_namespaces=(before.config.defaults.namespace, after.config.defaults.namespace),
        diagnostics=diagnostics,
        failed_paths=loaded.failed_paths,
        live=live,
        policy_lines=tuple(verdict_lines(head_specs.verdicts)),
    )
    if output == "json":
        click.echo(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(result.to_markdown(), nl=False)
    sys.exit(result.exit_code)


def _evaluate(
    snap: Snapshot,
    *,
    instance: str,
    source_commits: Mapping[str, str],
    policies: PolicySet | None = None,
    old_objects: Mapping[ObjectRef, Mapping[str, Any]] | None = None,
) -> Evaluation:
    """The one evaluation path, outside a cycle: nothing is known of the cluster, so a
    model trained by a run or a scheduled run between ticks renders to nothing."""
    context = RenderContext(
        instance=instance,
        default_namespace=snap.config.defaults.namespace,
        source_commits=source_commits,
    )
    return Evaluator().evaluate(
        snap.loaded,
        policies=snap.policies if policies is None else policies,
        context=context,
        blobs=snap.blobs,
        old_objects=old_objects or {},
    )


# --- rollouts ---------------------------------------------------------------------------


@cli.group()
def rollout() -> None:
    """Act on a model's canary rollout; the daemon carries it out and records it in Git."""


def _rollout_command(verb: str) -> Callable[..., None]:
    @_option("--namespace", "-n", default="default", show_default=True)
    @_option(
        "--kubeconfig",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar=["GITSYNC_KUBECONFIG", "KUBECONFIG"],
        default=None,
    )
    @_option("--context", "kube_context", default=None)
    @click.argument("name")
    def command(
        name: str, namespace: str, kubeconfig: Path | None, kube_context: str | None
    ) -> None:
        from gitsync.clients.kube import KubeClient  # noqa: PLC0415 - see TYPE_CHECKING above

        kube = KubeClient.from_kubeconfig(kubeconfig, context=kube_context)
        try:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            kube.annotate(
                "serving.kserve.io/v1beta1",
                "InferenceService",
                name,
                namespace=namespace,
                annotations={COMMAND_ANNOTATION: f"{verb}@{stamp}"},
                field_manager="gitsync-cli",
            )
        finally:
            kube.close()
        click.echo(f"{verb} requested for {namespace}/{name}; the next cycle carries it out")

    command.__doc__ = {
        "promote": "Move a canary past its current step (past an indefinite pause, too).",
        "abort": "Roll a canary back: all traffic to the stable revision.",
    }[verb]
    return command


for _verb in ("promote", "abort"):
    rollout.command(_verb)(_rollout_command(_verb))


# --- audit ------------------------------------------------------------------------------

_INSTANCE_HELP = "Only this gitsync instance's specs (default: every instance on the branch)."


def _branch_head(repository: Repository, branch: str) -> str:
    head = audit.find_branch(repository, branch)
    if head is None:
        raise ConfigurationError(f"no branch {branch!r} in the repository (fetch it first)")
    return head


def _no_status_branch(status_branch: str, consequence: str) -> None:
    # Not an error: until gitsync's first cycle (or a fetch of its branch) there is none.
    _echo_err(
        f"no status branch {status_branch!r} yet: {consequence} "
        "(gitsync has not reported here, or the branch is not fetched)"
    )


def _declared_specs(
    repository: Repository, head: str, root: str, instance: str
) -> dict[str, SpecInfo]:
    """Each spec of ``head`` named as its status document would name it, for a
    timeline before gitsync has written any."""
    snap = read_snapshot(repository, head, root=root)
    default = snap.config.defaults.namespace
    return {
        status_path(e.kind, e.namespace(default), e.name, instance=instance): SpecInfo(
            kind=e.kind,
            name=e.name,
            namespace=e.namespace(default),
            source=e.path,
            instance=instance,
        )
        for e in snap.loaded.entries
    }


def _instance_label(instance: str, instances: set[str]) -> str:
    """``[instance] `` before a spec, when more than one instance reports on the branch."""
    if len(instances) < 2:
        return ""
    return f"[{instance or '(old layout)'}] "


@cli.command()
@click.argument("name", required=False)
@_option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    help="A local clone with the spec branch and the status branch.",
)
@_option("--branch", default="main", show_default=True)
@_option("--status-branch", default="gitsync/status", show_default=True)
@_option("--path", "subdir", default="", help="Spec folder inside the repo.")
@_option("--since", type=click.DateTime(), default=None, help="Only events from this date.")
@_option("--instance", default=None, help=_INSTANCE_HELP)
@_option("--format", "output", type=click.Choice(["table", "json"]), default="table")
def history(
    *,
    name: str | None,
    repo: Path,
    branch: str,
    status_branch: str,
    subdir: str,
    since: datetime | None,
    instance: str | None,
    output: str,
) -> None:
    """One timeline per spec: its commits (who, when, which merge) and what gitsync did."""
    from gitsync.clients.git import Repository  # noqa: PLC0415 - see TYPE_CHECKING above

    repository = Repository.open(repo)
    since_utc = since.replace(tzinfo=UTC) if since is not None and since.tzinfo is None else since
    spec_head = _branch_head(repository, branch)
    status_head = audit.find_branch(repository, status_branch)
    if status_head is None:
        _no_status_branch(status_branch, "showing spec history only")
        status_commits = []
        specs = _declared_specs(repository, spec_head, subdir, instance or "default")
    else:
        status_commits = audit.status_commits(repository, status_head, since_utc)
        current = audit.current_statuses(repository, status_head, instance)
        specs = {p: SpecInfo.of(d) for p, d in current.items()}
    for commit in status_commits:  # specs removed since: their last known document
        for path, doc in commit.documents.items():
            if instance is None or doc.instance == instance:
                specs.setdefault(path, SpecInfo.of(doc))
    found = timelines(
        specs=specs,
        spec_commits=audit.spec_commits(repository, spec_head, under=subdir, since=since_utc),
        status_commits=status_commits,
        name=name,
        since=since_utc,
    )
    if name is not None and not found:
        searched = status_branch if status_head is not None else branch
        raise ConfigurationError(f"no spec named {name!r} on {searched}")
    if output == "json":
        payload = [timeline.as_dict() for timeline in found]
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
        return
    instances = {timeline.instance for timeline in found}
    for timeline in found:
        where = f"{timeline.namespace}/{timeline.name}" if timeline.namespace else timeline.name
        label = _instance_label(timeline.instance, instances)
        click.echo(f"{label}{timeline.kind} {where} ({', '.join(timeline.sources)})")
        for event in timeline.events:
            stamp = event.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
            click.echo(f"  {stamp}  {event.kind:<6} {event.commit[:7]}  {event.text}")
        click.echo("")


@cli.command()
@click.argument("name", required=False)
@_option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    help="A local clone with the status branch.",
)
@_option("--status-branch", default="gitsync/status", show_default=True)
@_option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="GITSYNC_KUBECONFIG",
    help="Also read the live objects' health from this cluster.",
)
@_option("--context", "kube_context", default=None)
@_option("--instance", default=None, help=_INSTANCE_HELP)
@_option("--format", "output", type=click.Choice(["table", "json"]), default="table")
def status(
    *,
    name: str | None,
    repo: Path,
    status_branch: str,
    kubeconfig: Path | None,
    kube_context: str | None,
    instance: str | None,
    output: str,
) -> None:
    """Current state of each spec, from the status branch (and the cluster, if given)."""
    from gitsync.clients.git import Repository  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.clients.kube import KubeClient  # noqa: PLC0415 - see TYPE_CHECKING above

    repository = Repository.open(repo)
    status_head = audit.find_branch(repository, status_branch)
    if status_head is None:
        _no_status_branch(status_branch, "no spec has a status to show")
        if output == "json":
            click.echo("[]")
        return
    docs = [
        doc
        for _, doc in sorted(audit.current_statuses(repository, status_head, instance).items())
        if name is None or doc.name == name
    ]
    if name is not None and not docs:
        raise ConfigurationError(f"no spec named {name!r} on {status_branch}")
    kube = KubeClient.from_kubeconfig(kubeconfig, context=kube_context) if kubeconfig else None
    try:
        rows = [_status_row(doc, kube) for doc in docs]
    finally:
        if kube is not None:
            kube.close()
    if output == "json":
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    instances = {doc.instance for doc in docs}
    for row in rows:
        live = f"  live: {row['live']}" if "live" in row else ""
        where = f"{row['namespace']}/{row['name']}"
        label = _instance_label(row["instance"], instances)
        click.echo(f"{label}{row['kind']} {where}: {row['phase']}: {row['message']}{live}")


@cli.command()
@_option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    help="A local clone with the spec branch and the status branch (fetch to see new commits).",
)
@_option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to serve on.")
@_option("--branch", default="main", show_default=True)
@_option("--status-branch", default="gitsync/status", show_default=True)
@_option("--path", "subdir", default="", help="Spec folder inside the repo.")
@_option("--instance", default=None, help=_INSTANCE_HELP)
@_option(
    "--dashboard-auth-file",
    "auth_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Require HTTP basic auth: a file of 'user:password' lines.",
)
def dashboard(
    *,
    repo: Path,
    listen: str,
    branch: str,
    status_branch: str,
    subdir: str,
    instance: str | None,
    auth_file: Path | None,
) -> None:
    """Serve the read-only web dashboard from a local clone's branches (no cluster)."""
    from gitsync.clients.git import Repository  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.dashboard import BasicAuth, Dashboard, RepositorySource  # noqa: PLC0415
    from gitsync.dashboard.serve import make, parse_listen  # noqa: PLC0415

    source = RepositorySource(
        Repository.open(repo),
        branch=branch,
        status_branch=status_branch,
        subdir=subdir,
        instance=instance,
    )
    auth = BasicAuth.from_file(auth_file) if auth_file is not None else None
    loopback = parse_listen(listen)[0] in {"127.0.0.1", "localhost"}
    hosts = frozenset({"127.0.0.1", "localhost"}) if loopback else None
    server = make(Dashboard(source, auth=auth, hosts=hosts), listen=listen)
    host, port = server.server_address[:2]
    click.echo(f"gitsync dashboard on http://{host!s}:{port}/ (Ctrl-C stops it)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _status_row(doc: StatusDocument, kube: KubeClient | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "kind": doc.kind,
        "namespace": doc.namespace,
        "name": doc.name,
        "instance": doc.instance,
        "phase": doc.phase.value,
        "message": doc.message,
        "source": doc.source,
    }
    if kube is None:
        return row
    healths = []
    for resource in doc.resources:
        if (recorded := parse_resource(resource)) is None:
            continue
        api_version, ref = recorded
        live = kube.get(api_version, ref.kind, ref.name, namespace=ref.namespace or None)
        healths.append("absent" if live is None else assess(live).health.value)
    row["live"] = ", ".join(healths) or "-"
    return row


@cli.command()
@_option("--status", "of_status", is_flag=True, help="The status documents' schema instead.")
def schema(of_status: bool) -> None:
    """Print the JSON Schema of every spec kind (for yaml-language-server and CI), or
    of the status documents on the status branch (a contract for tools reading it)."""
    chosen = status_json_schema() if of_status else json_schema()
    click.echo(orjson.dumps(chosen, option=orjson.OPT_INDENT_2).decode())


# --- sync / run ---------------------------------------------------------------------------


def _sync_options(function: Callable[..., None]) -> Callable[..., None]:
    """The options `sync` and `run` share (each also from GITSYNC_<NAME>)."""
    options = [
        _option("--repo", required=True, help="Git URL or local path of the spec repo."),
        _option("--branch", default="main", show_default=True),
        _option("--path", "subdir", default="", help="Spec folder inside the repo."),
        _option(
            "--kubeconfig",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar=["GITSYNC_KUBECONFIG", "KUBECONFIG"],
            help="Default: $KUBECONFIG, then ~/.kube/config.",
        ),
        _option("--context", "kube_context", default=None, help="kubeconfig context."),
        _option("--status-branch", default=None, help="Default: from gitsync.yaml."),
        _option(
            "--instance",
            default="default",
            show_default=True,
            help="Name of this gitsync instance; it only ever prunes its own objects.",
        ),
        _option(
            "--cache-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help=(
                "gitsync's cache: the git mirror in its git/, policy verdicts in eval/, spec"
                " and status YAML as data in specs/ and status/."
                " Default: ~/.cache/gitsync."
            ),
        ),
        _option(
            "--git-username",
            default=None,
            help="HTTPS user; the password or token comes from GITSYNC_GIT_PASSWORD.",
        ),
        _option(
            "--ssh-key",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="SSH private key (its .pub beside it); host keys from ~/.ssh/known_hosts.",
        ),
        _option("--git-timeout", type=float, default=30.0, show_default=True),
        _option(
            "--concurrency",
            type=click.IntRange(min=1),
            default=None,
            help="Objects written at once. Default: 8.",
        ),
        _option(
            "--kube-api-qps",
            type=click.FloatRange(min=0),
            default=None,
            help="Requests a second to the API server, on average; 0: no limit. Default: 300.",
        ),
        _option(
            "--kube-api-burst",
            type=click.IntRange(min=1),
            default=None,
            help="Requests to the API server at once, above the QPS. Default: 600.",
        ),
        _option(
            "--log-format", type=click.Choice(["json", "text"]), default="text", show_default=True
        ),
        _option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning", "error"]),
            default=None,
            help="Default: warning for sync (its report goes to stdout), info for run.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _reconciler(
    *,
    repo: str,
    branch: str,
    subdir: str,
    kubeconfig: Path | None,
    kube_context: str | None,
    status_branch: str | None,
    instance: str,
    cache_dir: Path | None,
    git_username: str | None,
    ssh_key: Path | None,
    git_timeout: float,
    concurrency: int | None,
    kube_api_qps: float | None,
    kube_api_burst: int | None,
    wait_timeout: float = 0.0,
    watch: bool = False,
) -> Reconciler:
    from gitsync.clients.git import (  # noqa: PLC0415 - see TYPE_CHECKING above
        Credentials,
        GitSource,
        PasswordCredentials,
        SshKeyCredentials,
    )
    from gitsync.clients.kube import (  # noqa: PLC0415 - see TYPE_CHECKING above
        DEFAULT_BURST,
        DEFAULT_CONCURRENCY,
        DEFAULT_QPS,
        KubeClient,
    )
    from gitsync.dev.binaries import cache_root  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.reconciler import Reconciler, SyncOptions  # noqa: PLC0415 - see TYPE_CHECKING above

    credentials: Credentials | None = None
    if git_username:
        password = os.environ.get("GITSYNC_GIT_PASSWORD")
        if not password:
            raise ConfigurationError("--git-username needs GITSYNC_GIT_PASSWORD")
        credentials = PasswordCredentials(git_username, password)
    elif ssh_key:
        public_key = ssh_key.with_name(ssh_key.name + ".pub")
        credentials = SshKeyCredentials(
            private_key=ssh_key,
            # libssh2 derives the public key from the private one when no .pub exists.
            public_key=public_key if public_key.exists() else None,
            passphrase=os.environ.get("GITSYNC_SSH_PASSPHRASE"),
        )
    cache = cache_dir or cache_root()
    git = GitSource(
        repo,
        branch=branch,
        cache_dir=cache / "git",
        credentials=credentials,
        connect_timeout=min(10.0, git_timeout),
        io_timeout=git_timeout,
    )
    kube = KubeClient.from_kubeconfig(
        kubeconfig,
        context=kube_context,
        concurrency=DEFAULT_CONCURRENCY if concurrency is None else concurrency,
        qps=DEFAULT_QPS if kube_api_qps is None else kube_api_qps,
        burst=DEFAULT_BURST if kube_api_burst is None else kube_api_burst,
    )
    options = SyncOptions(
        path=subdir, instance=instance, status_branch=status_branch, wait_timeout=wait_timeout
    )
    return Reconciler(
        git=git,
        kube=kube,
        options=options,
        watch=watch,
        cache_dir=cache,
    )


@cli.command()
@_sync_options
@_option(
    "--wait",
    "wait_timeout",
    type=float,
    default=0.0,
    help="Seconds to wait for written objects to settle before reporting status.",
)
def sync(log_format: str, log_level: str | None, **options: Any) -> None:
    """Run one reconcile cycle.

    Exit 0 when every spec is applied, 1 when the cycle ran but some spec failed
    (each is reported), 2 when it could not run (git or cluster unreachable, bad
    configuration).
    """
    from gitsync.log import configure as configure_logging  # noqa: PLC0415 - see TYPE_CHECKING above

    configure_logging(json=log_format == "json", level=log_level or "warning")
    reconciler = _reconciler(**options)
    try:
        report = reconciler.cycle()
    finally:
        reconciler.close()
    for diagnostic in report.diagnostics:
        click.echo(redact(str(diagnostic)), err=True)
    for change in report.changes.changes:
        if change.action is not Action.UNCHANGED or change.error:
            outcome = f"failed: {change.error}" if change.error else change.action.value
            reason = f" ({change.reason})" if change.reason and not change.error else ""
            click.echo(redact(f"{change.key}: {outcome}{reason}"))
    if report.changes.prune_refused:
        click.echo(redact(f"prune refused: {report.changes.prune_refused}"), err=True)
    for status in report.statuses:
        where = f"{status.namespace}/{status.name}"
        click.echo(f"{status.kind} {where}: {status.phase.value}: {status.message}")
    if report.status_commit:
        click.echo(f"status commit {report.status_commit}")
    if report.status_error:
        click.echo(redact(f"status not published: {report.status_error}"), err=True)
    if report.error is not None:
        raise report.error  # could not run to the end: main() says why, exit 2
    sys.exit(1 if report.failed else 0)


@cli.command()
@_sync_options
@_option("--interval", type=float, default=30.0, show_default=True, help="Seconds.")
@_option("--jitter", type=float, default=None, help="Seconds. Default: interval / 10.")
def run(
    log_format: str, log_level: str | None, interval: float, jitter: float | None, **options: Any
) -> None:
    """Reconcile every --interval seconds until SIGTERM."""
    from gitsync.daemon import Daemon  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.log import configure as configure_logging  # noqa: PLC0415 - see TYPE_CHECKING above

    configure_logging(json=log_format == "json", level=log_level or "info")
    reconciler = _reconciler(**options, watch=True)
    try:
        Daemon(
            reconciler.cycle, interval=interval, jitter=interval / 10 if jitter is None else jitter
        ).run()
    finally:
        reconciler.close()


def main() -> None:
    """Console-script entry point: turns gitsync errors into a message and exit code 2.

    The message is redacted (a usage error may quote a URL given with a token), and in
    ``--log-format json`` it is the stream's last JSON line, so the stream stays JSON.
    """
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        shown = io.StringIO()
        exc.show(file=shown)
        _echo_err(redact(shown.getvalue().rstrip("\n")))
        sys.exit(2)
    except click.Abort:
        _echo_err("aborted")
        sys.exit(130)
    except GitsyncError as exc:
        from gitsync.log import fatal  # noqa: PLC0415 - see TYPE_CHECKING above

        fatal(str(exc))
        sys.exit(2)
    except Exception:  # noqa: BLE001 - a bug: its traceback is worth showing, not a token in it
        _echo_err(redact(traceback.format_exc().rstrip("\n")))
        sys.exit(1)
