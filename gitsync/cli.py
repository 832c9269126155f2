"""The ``gitsync`` command line: parses options and wires modules together, nothing more.

Every option can also come from a ``GITSYNC_<OPTION>`` environment variable
(``--repo`` from ``GITSYNC_REPO``; ``--crds`` from ``GITSYNC_CRDS_DIR``, a
``:``-separated list; ``--kubeconfig`` also from ``KUBECONFIG``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from gitsync import __version__
from gitsync.apply import dry_run_views
from gitsync.clients.git import (
    Credentials,
    GitSource,
    PasswordCredentials,
    Repository,
    SshKeyCredentials,
)
from gitsync.clients.kube import KubeClient
from gitsync.daemon import Daemon
from gitsync.dev.binaries import cache_root
from gitsync.diff import Action
from gitsync.errors import ConfigurationError, GitsyncError
from gitsync.loading import (
    CONFIG_FILE,
    Entry,
    load_config,
    load_file,
    load_tree,
    select_paths,
)
from gitsync.log import configure as configure_logging
from gitsync.plan import make_plan
from gitsync.reconciler import Reconciler, SyncOptions
from gitsync.render import RenderContext, render
from gitsync.snapshot import Snapshot, read_snapshot
from gitsync.specs import Config, json_schema

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
def dev_up(folder: Path, crd_dirs: tuple[Path, ...], controllers: bool) -> None:
    """Start etcd, kube-apiserver, the CRDs and the dev controllers (idempotent)."""
    from gitsync.dev import controlplane  # noqa: PLC0415 - keeps `gitsync --help` fast

    started = time.monotonic()
    plane = controlplane.up(
        folder, crd_dirs=list(crd_dirs), controllers=controllers, progress=_echo_err
    )
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
    """Validate the specs in PATH (a spec folder). Exit 0 when valid, 1 otherwise."""
    config_file = path / CONFIG_FILE
    config, problems = (
        load_config(config_file.read_bytes()) if config_file.is_file() else (Config(), [])
    )
    files = [p.relative_to(path).as_posix() for p in sorted(path.rglob("*")) if p.is_file()]
    selected = select_paths(files, root="", config=config)
    results = [load_file(f, (path / f).read_bytes()) for f in selected]
    loaded = load_tree(results, default_namespace=config.defaults.namespace)
    diagnostics = [*problems, *loaded.diagnostics]
    if output == "json":
        click.echo(
            orjson.dumps(
                {
                    "valid": not diagnostics,
                    "specs": len(loaded.entries),
                    "errors": [d.as_dict() for d in diagnostics],
                },
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
    else:
        for diagnostic in diagnostics:
            click.echo(str(diagnostic))
        files_count = len(results)
        verdict = "valid" if not diagnostics else f"{len(diagnostics)} error(s)"
        _echo_err(f"{files_count} file(s), {len(loaded.entries)} object(s): {verdict}")
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
    repository = Repository.open(repo)
    snapshots = [
        read_snapshot(repository, repository.resolve(rev), root=subdir) for rev in (base, head)
    ]
    rendered = [_render_snapshot(repository, snap, instance=instance) for snap in snapshots]
    before, after = snapshots
    diagnostics = [*after.config_diagnostics, *after.loaded.diagnostics]
    live = None
    if kubeconfig is not None:
        kube = KubeClient.from_kubeconfig(kubeconfig, context=kube_context)
        try:
            live = dry_run_views(kube, rendered[1], diagnostics)
        finally:
            kube.close()
    result = make_plan(
        base_commit=before.commit,
        head_commit=after.commit,
        base=rendered[0],
        head=rendered[1],
        default_namespaces=(before.config.defaults.namespace, after.config.defaults.namespace),
        diagnostics=diagnostics,
        failed_paths=after.loaded.failed_paths,
        live=live,
    )
    if output == "json":
        click.echo(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(result.to_markdown(), nl=False)
    sys.exit(result.exit_code)


def _render_snapshot(
    repository: Repository, snap: Snapshot, *, instance: str
) -> list[tuple[Entry, dict[str, Any]]]:
    commits = repository.last_changes(snap.commit, list(snap.blobs)).by_path
    context = RenderContext(
        instance=instance,
        default_namespace=snap.config.defaults.namespace,
        source_commits=commits,
    )
    return [(entry, render(entry, context)) for entry in snap.loaded.entries]


@cli.command()
def schema() -> None:
    """Print the JSON Schema of every spec kind (for yaml-language-server and CI)."""
    click.echo(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode())


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
            help="gitsync's cache (the git mirror lives in its git/). Default: ~/.cache/gitsync.",
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
    wait_timeout: float = 0.0,
    watch: bool = False,
) -> Reconciler:
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
    git = GitSource(
        repo,
        branch=branch,
        cache_dir=(cache_dir or cache_root()) / "git",
        credentials=credentials,
        connect_timeout=min(10.0, git_timeout),
        io_timeout=git_timeout,
    )
    kube = KubeClient.from_kubeconfig(kubeconfig, context=kube_context)
    options = SyncOptions(
        path=subdir, instance=instance, status_branch=status_branch, wait_timeout=wait_timeout
    )
    return Reconciler(git=git, kube=kube, options=options, watch=watch)


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
    configure_logging(json=log_format == "json", level=log_level or "warning")
    report = _reconciler(**options).cycle()
    for diagnostic in report.diagnostics:
        click.echo(str(diagnostic), err=True)
    for change in report.changes.changes:
        if change.action is not Action.UNCHANGED or change.error:
            outcome = f"failed: {change.error}" if change.error else change.action.value
            reason = f" ({change.reason})" if change.reason and not change.error else ""
            click.echo(f"{change.key}: {outcome}{reason}")
    if report.changes.prune_refused:
        click.echo(f"prune refused: {report.changes.prune_refused}", err=True)
    for status in report.statuses:
        where = f"{status.namespace}/{status.name}"
        click.echo(f"{status.kind} {where}: {status.phase.value}: {status.message}")
    if report.status_commit:
        click.echo(f"status commit {report.status_commit}")
    if report.status_error:
        click.echo(f"status not published: {report.status_error}", err=True)
    sys.exit(1 if report.failed else 0)


@cli.command()
@_sync_options
@_option("--interval", type=float, default=30.0, show_default=True, help="Seconds.")
@_option("--jitter", type=float, default=None, help="Seconds. Default: interval / 10.")
def run(
    log_format: str, log_level: str | None, interval: float, jitter: float | None, **options: Any
) -> None:
    """Reconcile every --interval seconds until SIGTERM."""
    configure_logging(json=log_format == "json", level=log_level or "info")
    reconciler = _reconciler(**options, watch=True)
    try:
        Daemon(
            reconciler.cycle, interval=interval, jitter=interval / 10 if jitter is None else jitter
        ).run()
    finally:
        reconciler.close()


def main() -> None:
    """Console-script entry point: turns gitsync errors into a message and exit code 2."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.Abort:
        _echo_err("aborted")
        sys.exit(130)
    except GitsyncError as exc:
        _echo_err(f"gitsync: {exc}")
        sys.exit(2)
