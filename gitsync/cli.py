"""The ``gitsync`` command line: parses options and wires modules together, nothing more.

Every option can also come from a ``GITSYNC_<OPTION>`` environment variable
(``--repo`` from ``GITSYNC_REPO``; ``--crds`` from ``GITSYNC_CRDS_DIR``, a
``:``-separated list; ``--kubeconfig`` also from ``KUBECONFIG``).
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import re
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click
import orjson
import yaml

from gitsync import __version__
from gitsync.errors import ConfigurationError, GitsyncError, LeadershipLostError
from gitsync.redact import redact
from gitsync.types import DEFAULT_STATUS_BRANCH, DNS1123_LABEL

if TYPE_CHECKING:
    # Imported where used: a command pays only for its own modules. The Kubernetes
    # client alone takes longer to import than `gitsync validate` takes to run, and
    # the spec models (pydantic), the policy engine and pygit2 are not free either; a
    # `gitsync sync` whose inputs have not changed needs none of the models.
    from gitsync import replay
    from gitsync.clients.git import GitSource, Repository
    from gitsync.clients.kube import KubeClient
    from gitsync.election import LeaderElector
    from gitsync.evaluation import Evaluation
    from gitsync.history import SpecInfo
    from gitsync.ledger import Ledger
    from gitsync.metrics import Metrics
    from gitsync.policy import PolicySet
    from gitsync.reconciler import CycleReport, Reconciler
    from gitsync.snapshot import Snapshot
    from gitsync.status_document import StatusDocument
    from gitsync.types import ObjectRef

__all__ = ["main"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _option(flag: str, *names: str, **settings: Any) -> Callable[[_F], _F]:
    """A click option that can also be set as GITSYNC_<FLAG> in the environment."""
    settings.setdefault("envvar", "GITSYNC_" + flag.removeprefix("--").upper().replace("-", "_"))
    settings.setdefault("show_envvar", True)
    return click.option(flag, *names, **settings)


def _shard_options(function: _F) -> _F:
    """--shards N --shard-index I: this process reconciles the spec files whose path
    hashes to I (gitsync.sharding)."""
    function = _option(
        "--shard-index",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="This process's shard, 0 to --shards - 1.",
    )(function)
    return _option(
        "--shards",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Processes the instance's spec files are split across, by a hash of each path.",
    )(function)


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
    from gitsync.loading import Severity  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.snapshot import read_folder  # noqa: PLC0415 - see TYPE_CHECKING above

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


# --- import ---------------------------------------------------------------------------


@cli.command("import")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file a spec under OUT/<namespace>/ instead of printing them",
)
@click.option(
    "--namespace",
    default="default",
    show_default=True,
    help="The namespace of objects that name none (the repo's defaults.namespace)",
)
def import_(files: tuple[Path, ...], out: Path | None, namespace: str) -> None:
    """Turn Kubernetes manifests (InferenceServices, or anything else) into the specs
    that render back to them exactly, apart from gitsync's own stamps.

    Exit 1 when any object was refused (the others are still imported); existing
    files under --out are never overwritten.
    """
    from gitsync.importing import Refused, import_text  # noqa: PLC0415 - see TYPE_CHECKING above

    refused = 0
    printed: list[str] = []
    for file in files:
        for result in import_text(str(file), file.read_bytes(), default_namespace=namespace):
            if isinstance(result, Refused):
                refused += 1
                _echo_err(f"{result.source}: refused: {result.reason}")
                continue
            header = "".join(f"# {line}\n" for line in (f"from {result.source}", *result.notes))
            text = header + yaml.dump(result.document, Dumper=yaml.CSafeDumper, sort_keys=False)
            if out is None:
                printed.append(text)
                continue
            metadata = result.document["metadata"]
            target = (
                out / str(metadata.get("namespace") or namespace) / _import_file(result.document)
            )
            if target.exists():
                refused += 1
                _echo_err(f"{result.source}: refused: {target} exists (never overwritten)")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            _echo_err(f"{result.source}: wrote {target}")
    if printed:
        click.echo("---\n".join(printed), nl=False)
    sys.exit(1 if refused else 0)


def _import_file(document: Mapping[str, Any]) -> str:
    """``<name>.yaml`` for a gitsync spec, ``<kind>-<name>.yaml`` for a kept object."""
    name = str(document["metadata"]["name"])
    if str(document.get("apiVersion", "")).startswith("gitsync.io/"):
        return f"{name}.yaml"
    return f"{str(document['kind']).lower()}-{name}.yaml"


# --- render ---------------------------------------------------------------------------


_DNS_LABEL = re.compile(DNS1123_LABEL)


def _namespace(_context: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and (len(value) > 63 or not _DNS_LABEL.match(value)):
        raise click.BadParameter(f"{value!r} is not a namespace name (a DNS-1123 label)")
    return value


@cli.command("render")
@click.argument(
    "path", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path(".")
)
@_option(
    "--instance",
    default="default",
    show_default=True,
    help="The gitsync instance whose label the objects carry, as sync's --instance.",
)
@_option(
    "--namespace",
    "default_namespace",
    default=None,
    callback=_namespace,
    help="Namespace of specs that name none. Default: gitsync.yaml's defaults.namespace.",
)
def render_command(path: Path, instance: str, default_namespace: str | None) -> None:
    """Print the Kubernetes objects the specs in PATH render to, as multi-document YAML.

    The objects are what sync would apply (rendered, overrides applied, judged by the
    policies), namespaces first, then by kind, namespace and name; no cluster is
    needed. A model served from a TrainingRun's output, or a scheduled run, renders
    only in a cycle and is noted on stderr. Exit 1, with path:line:col diagnostics
    on stderr and nothing on stdout, when any spec is invalid or denied.
    """
    from gitsync.loading import Severity  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.snapshot import read_folder  # noqa: PLC0415 - see TYPE_CHECKING above

    snap = read_folder(path, default_namespace=default_namespace)
    evaluation = _evaluate(snap, instance=instance, source_commits={})
    diagnostics = [*snap.config_diagnostics, *evaluation.loaded.diagnostics]
    warnings = [
        *snap.policy_warnings,
        *(d for d in evaluation.verdicts.diagnostics if d.severity is Severity.WARNING),
    ]
    for diagnostic in [*diagnostics, *warnings]:
        _echo_err(str(diagnostic))
    if diagnostics:
        # Nothing on stdout: `gitsync render | kubectl apply -f -` must not apply a part.
        sys.exit(1)
    objects = []
    for entry, body in evaluation.pairs():
        if body is None:
            ref = entry.key(snap.config.defaults.namespace)
            _echo_err(f"# {ref.kind} {ref.namespace}/{ref.name}: renders in a sync cycle only")
        else:
            objects.append(body)
    objects.sort(key=_object_order)
    click.echo(yaml.safe_dump_all(objects, sort_keys=False, explicit_start=True), nl=False)


def _object_order(obj: Mapping[str, Any]) -> tuple[bool, str, str, str, str]:
    """Namespaces and definitions first (what the rest needs to apply), then by kind,
    namespace and name."""
    metadata = obj.get("metadata") or {}
    kind = str(obj.get("kind", ""))
    return (
        kind not in ("Namespace", "CustomResourceDefinition"),
        kind,
        str(metadata.get("namespace") or ""),
        str(metadata.get("name", "")),
        str(obj.get("apiVersion", "")),
    )


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
@_shard_options
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
    shards: int,
    shard_index: int,
    output: str,
) -> None:
    """Say what merging HEAD into BASE would do. Exit 0 no change, 2 changes, 1 errors."""
    from gitsync.clients.git import Repository  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.evaluation import spec_objects  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.plan import make_plan  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.policy import PolicySet, verdict_lines  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.sharding import Shard  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.snapshot import read_snapshot  # noqa: PLC0415 - see TYPE_CHECKING above

    repository = Repository.open(repo)
    shard = Shard(shard_index, shards)
    snapshots = [
        read_snapshot(repository, repository.resolve(rev), root=subdir, shard=shard)
        for rev in (base, head)
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
    model trained by a run or a scheduled run between ticks renders to nothing (the
    policies judge the run of the schedule's next tick)."""
    from gitsync.evaluation import Evaluator  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.render import RenderContext  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.training import preview_unplanned  # noqa: PLC0415 - see TYPE_CHECKING above

    context = RenderContext(
        instance=instance,
        default_namespace=snap.config.defaults.namespace,
        source_commits=source_commits,
    )
    now = datetime.now(UTC)
    return Evaluator().evaluate(
        snap.loaded,
        policies=snap.policies if policies is None else policies,
        context=context,
        blobs=snap.blobs,
        old_objects=old_objects or {},
        preview=lambda entry: preview_unplanned(entry, context, now=now),
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
        from gitsync.rollout import COMMAND_ANNOTATION  # noqa: PLC0415 - see TYPE_CHECKING above

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
    from gitsync import audit  # noqa: PLC0415 - see TYPE_CHECKING above

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
    from gitsync.history import SpecInfo  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.snapshot import read_snapshot  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.status import status_path  # noqa: PLC0415 - see TYPE_CHECKING above

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
@_option("--status-branch", default=DEFAULT_STATUS_BRANCH, show_default=True)
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
    from gitsync import audit  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.clients.git import Repository  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.history import SpecInfo, timelines  # noqa: PLC0415 - see TYPE_CHECKING above

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
@_option("--status-branch", default=DEFAULT_STATUS_BRANCH, show_default=True)
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
    from gitsync import audit  # noqa: PLC0415 - see TYPE_CHECKING above
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
@_option("--status-branch", default=DEFAULT_STATUS_BRANCH, show_default=True)
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
    from gitsync.health import assess  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.types import parse_resource  # noqa: PLC0415 - see TYPE_CHECKING above

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
    from gitsync.specs import json_schema  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.status_document import status_json_schema  # noqa: PLC0415 - see TYPE_CHECKING above

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
        _option(
            "--serviceaccount-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default="/var/run/secrets/kubernetes.io/serviceaccount",
            show_default=True,
            help="In a cluster without a kubeconfig: the ServiceAccount's token, ca.crt"
            " and namespace.",
        ),
        _option("--status-branch", default=None, help="Default: from gitsync.yaml."),
        _option(
            "--instance",
            default="default",
            show_default=True,
            help="Name of this gitsync instance; it only ever prunes its own objects.",
        ),
        _shard_options,
        _option(
            "--events/--no-events",
            envvar="GITSYNC_EVENTS",
            default=True,
            show_default=True,
            help="Post Kubernetes Events (events.k8s.io/v1) on the objects gitsync changes.",
        ),
        _option(
            "--cache-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help=(
                "gitsync's cache: the git mirror in its git/; per configuration, in"
                " scopes/, policy verdicts and spec and status YAML as data; the last"
                " settled sync's record in sync/. Default: ~/.cache/gitsync."
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
            help="Requests a second to the API server, on average; 0: no limit. Default: 1000.",
        ),
        _option(
            "--kube-api-burst",
            type=click.IntRange(min=1),
            default=None,
            help="Requests to the API server at once, above the QPS. Default: 2000.",
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


#: The options of `sync` and `run` that say how to reach Git and the API server.
_CLIENT_OPTIONS: Final = (
    "repo",
    "branch",
    "kubeconfig",
    "kube_context",
    "serviceaccount_dir",
    "cache_dir",
    "git_username",
    "ssh_key",
    "git_timeout",
    "concurrency",
    "kube_api_qps",
    "kube_api_burst",
)


def _clients(
    *,
    repo: str,
    branch: str,
    kubeconfig: Path | None,
    kube_context: str | None,
    serviceaccount_dir: Path,
    cache_dir: Path | None,
    git_username: str | None,
    ssh_key: Path | None,
    git_timeout: float,
    concurrency: int | None,
    kube_api_qps: float | None,
    kube_api_burst: int | None,
    metrics: Metrics | None = None,
) -> tuple[GitSource, KubeClient]:
    """The spec repo's source and the API server's client the options describe."""
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
        cache_dir=_cache(cache_dir) / "git",
        credentials=credentials,
        connect_timeout=min(10.0, git_timeout),
        io_timeout=git_timeout,
        observer=metrics.record_git if metrics else None,
    )
    kube = KubeClient.connect(
        kubeconfig,
        context=kube_context,
        serviceaccount_dir=serviceaccount_dir,
        concurrency=DEFAULT_CONCURRENCY if concurrency is None else concurrency,
        qps=DEFAULT_QPS if kube_api_qps is None else kube_api_qps,
        burst=DEFAULT_BURST if kube_api_burst is None else kube_api_burst,
        observer=metrics.record_kube if metrics else None,
    )
    return git, kube


def _cache(cache_dir: Path | None) -> Path:
    from gitsync.dev.binaries import cache_root  # noqa: PLC0415 - see TYPE_CHECKING above

    return cache_dir or cache_root()


def _reconciler(
    options: Mapping[str, Any],
    *,
    wait_timeout: float = 0.0,
    watch: bool = False,
    metrics: Metrics | None = None,
    may_write: Callable[[], bool] = lambda: True,
    clients: tuple[GitSource, KubeClient] | None = None,
    ledger: Ledger | None = None,
) -> Reconciler:
    """The reconciler of the `sync` and `run` options; ``clients`` when already made;
    ``ledger``: the last sync's, for the first cycle to start from."""
    from gitsync.event_recorder import EventRecorder  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.reconciler import Reconciler, SyncOptions  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.sharding import Shard  # noqa: PLC0415 - see TYPE_CHECKING above

    git, kube = clients or _clients(
        **{name: options[name] for name in _CLIENT_OPTIONS}, metrics=metrics
    )
    instance = options["instance"]
    sync_options = SyncOptions(
        path=options["subdir"],
        instance=instance,
        status_branch=options["status_branch"],
        wait_timeout=wait_timeout,
        shard=Shard(options["shard_index"], options["shards"]),
    )
    # In a pod the host name is the pod's name: which replica told it.
    reporter = f"{instance}-{socket.gethostname()}"
    return Reconciler(
        git=git,
        kube=kube,
        options=sync_options,
        watch=watch,
        cache_dir=_cache(options["cache_dir"]),
        may_write=may_write,
        events=EventRecorder(kube, reporting_instance=reporter) if options["events"] else None,
        ledger=ledger,
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
    configuration). When the spec commit, the status branch and every object listed
    are as the last settled sync of these options found them, its report is repeated
    and nothing else is done (remove CACHE_DIR/sync to run the whole cycle anyway).
    """
    # One cycle, then the process ends: the cyclic garbage collector only rescans the
    # ever-growing heap of modules, specs, documents and live objects (at N=10,000 a
    # no-op took 6.0 s with it, 3.7 s without, its peak RSS the same 441 MB). Before
    # the imports, which it slowed by a tenth as well.
    gc.disable()
    import structlog  # noqa: PLC0415 - see TYPE_CHECKING above

    from gitsync import replay  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.log import configure as configure_logging  # noqa: PLC0415 - see TYPE_CHECKING above

    configure_logging(json=log_format == "json", level=log_level or "warning")
    clients = git, kube = _clients(**{name: options[name] for name in _CLIENT_OPTIONS})
    # The spec models, the policies and the reconciler are imported only when the
    # inputs are not those of the last settled sync (see gitsync.replay).
    key = replay.options_key(options, server=kube.server)
    records = _cache(options["cache_dir"]) / "sync"
    record = replay.load(records, key=key)
    instance, now = options["instance"], datetime.now(UTC)
    if record is not None and replay.still_holds(
        record, git=git, kube=kube, instance=instance, now=now
    ):
        structlog.get_logger(__name__).info(
            "inputs unchanged since the last sync: its report repeated",
            commit=record.settled.observed.head[:12],
        )
        for err, text in record.lines:
            click.echo(text, err=err)
        sys.exit(record.exit_code)

    # What the last sync found unchanged: the specs whose inputs are still the same
    # carry its outcome (see gitsync.focus).
    reconciler = _reconciler(
        options,
        wait_timeout=options["wait_timeout"],
        clients=clients,
        ledger=replay.load_ledger(records, key=key),
    )
    try:
        report = reconciler.cycle()
    finally:
        reconciler.close()
    said = _report_lines(report)
    for err, text in said:
        click.echo(text, err=err)
    if report.status_commit:
        click.echo(f"status commit {report.status_commit}")
    if report.status_error:
        click.echo(redact(f"status not published: {report.status_error}"), err=True)
    exit_code = 1 if report.failed else 0
    settled = reconciler.settled
    replay.save(
        records,
        replay.Record(key=key, settled=settled, lines=tuple(said), exit_code=exit_code)
        if settled is not None
        else None,
        key=key,
    )
    replay.save_ledger(records, reconciler.ledger, key=key)
    if report.error is not None:
        raise report.error  # could not run to the end: main() says why, exit 2
    sys.exit(exit_code)


def _report_lines(report: CycleReport) -> list[replay.Line]:
    """What `gitsync sync` says of ``report`` that a run on the same inputs would
    say again (all of it but the status commit and a failed push), each line marked
    for stderr or stdout."""
    from gitsync.diff import Action  # noqa: PLC0415 - see TYPE_CHECKING above

    lines: list[replay.Line] = [(True, redact(str(d))) for d in report.diagnostics]
    for change in report.changes.changes:
        if change.action is not Action.UNCHANGED or change.error:
            outcome = f"failed: {change.error}" if change.error else change.action.value
            reason = f" ({change.reason})" if change.reason and not change.error else ""
            lines.append((False, redact(f"{change.key}: {outcome}{reason}")))
    if report.changes.prune_refused:
        lines.append((True, redact(f"prune refused: {report.changes.prune_refused}")))
    for status in report.statuses:
        where = f"{status.namespace}/{status.name}"
        lines.append((False, f"{status.kind} {where}: {status.phase.value}: {status.message}"))
    return lines


def _leader_options(function: Callable[..., None]) -> Callable[..., None]:
    """`run --leader-elect` and its Lease (client-go's defaults)."""
    options = [
        _option(
            "--leader-elect",
            is_flag=True,
            default=False,
            help="Run cycles only while holding a coordination.k8s.io Lease (run replicas).",
        ),
        _option(
            "--lease-namespace",
            default=None,
            help="The Lease's namespace. Default in a cluster: the ServiceAccount's.",
        ),
        _option("--lease-name", default=None, help="Default: gitsync-<instance>."),
        _option(
            "--lease-duration",
            type=click.IntRange(min=1),
            default=15,
            show_default=True,
            help="Seconds a standby waits, by its own clock, without seeing a renewal.",
        ),
        _option(
            "--renew-deadline",
            type=float,
            default=10.0,
            show_default=True,
            help="Seconds after its last renewal until which the leader may write.",
        ),
        _option(
            "--retry-period",
            type=float,
            default=2.0,
            show_default=True,
            help="Seconds between tries to renew or acquire.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@cli.command()
@_sync_options
@_option("--interval", type=float, default=30.0, show_default=True, help="Seconds.")
@_option("--jitter", type=float, default=None, help="Seconds. Default: interval / 10.")
@_option(
    "--listen",
    default=None,
    help="Serve /metrics, /healthz, /readyz and /hooks/{github,gitlab,generic} at"
    " HOST:PORT (:PORT for every interface). Default: no listener.",
)
@_option(
    "--webhook-secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The hooks' shared secret. Default: $GITSYNC_WEBHOOK_SECRET; neither: hooks off.",
)
@_option(
    "--advertise-url",
    default=None,
    help="With --leader-elect and --listen: the URL other replicas reach this one's"
    " listener at (e.g. http://$(POD_IP):8080), so a standby hands the hooks it gets"
    " to the leader. Default: hooks a standby gets wait for the leader's next poll.",
)
@_option(
    "--cycle-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds a cycle may run before /healthz says the loop is stuck.",
)
@_leader_options
def run(
    *,
    log_format: str,
    log_level: str | None,
    interval: float,
    jitter: float | None,
    listen: str | None,
    webhook_secret_file: Path | None,
    advertise_url: str | None,
    cycle_timeout: float,
    leader_elect: bool,
    lease_namespace: str | None,
    lease_name: str | None,
    lease_duration: int,
    renew_deadline: float,
    retry_period: float,
    **options: Any,
) -> None:
    """Reconcile every --interval seconds until SIGTERM; a push webhook wakes it."""
    from gitsync.daemon import Daemon  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.log import configure as configure_logging  # noqa: PLC0415 - see TYPE_CHECKING above

    configure_logging(json=log_format == "json", level=log_level or "info")
    metrics: Metrics | None = None
    if listen is not None:
        from gitsync.listener import parse_address, webhook_secret  # noqa: PLC0415 - see TYPE_CHECKING above
        from gitsync.metrics import Metrics  # noqa: PLC0415 - see TYPE_CHECKING above

        address, secret = parse_address(listen), webhook_secret(webhook_secret_file)
        metrics = Metrics()
    elif webhook_secret_file is not None:
        raise ConfigurationError("--webhook-secret-file needs --listen: hooks arrive over it")
    elector = None
    if leader_elect:
        elector = _elector(
            options,
            namespace=lease_namespace,
            name=lease_name or f"gitsync-{options['instance']}",
            timings=(lease_duration, renew_deadline, retry_period),
            leader_url=advertise_url if listen is not None else None,
        )
    reconciler = _reconciler(
        options,
        watch=True,
        metrics=metrics,
        may_write=elector.may_write if elector else lambda: True,
    )

    def cycle() -> CycleReport:
        report = reconciler.cycle()
        if metrics is not None:
            metrics.record_cycle(report)
        return report

    daemon = Daemon(
        cycle,
        interval=interval,
        jitter=interval / 10 if jitter is None else jitter,
        cycle_timeout=cycle_timeout,
        leading=None if elector is None else elector.may_write,
    )
    try:
        with contextlib.ExitStack() as stack:
            listener = None
            if metrics is not None:
                from gitsync.dashboard import Dashboard, MirrorSource  # noqa: PLC0415
                from gitsync.listener import Listener  # noqa: PLC0415 - see TYPE_CHECKING above

                pages = MirrorSource(
                    reconciler.mirror,
                    branch=options["branch"],
                    status_branch=lambda: reconciler.status_branch,
                    subdir=options["subdir"],
                    instance=options["instance"],
                )
                listener = Listener(
                    address,
                    metrics=metrics,
                    progress=lambda: daemon.progress,
                    wake=daemon.wake,
                    branch=options["branch"],
                    secret=secret,
                    clock=time.monotonic,
                    forward=_forwarder(elector),
                    dashboard=Dashboard(pages),
                ).start()
                stack.callback(listener.close)
            if elector is not None:
                if listener is not None:
                    # A standby until the Lease says otherwise: gitsync_leader 0, and
                    # ready as a healthy standby.
                    listener.set_leader(False)
                    elector.on_change(listener.set_leader)
                elector.on_change(lambda leading: None if leading else daemon.stop())
                elector.start()
            daemon.run()
    finally:
        reconciler.close()
        if elector is not None:
            # Only now, with no cycle running: a standby may start at once.
            elector.stop(release=True)
            elector.kube.close()
    if elector is not None and elector.lost:
        raise LeadershipLostError(
            f"lost the lease {elector.namespace}/{elector.name}: exiting, to restart as a standby"
        )


def _forwarder(
    elector: LeaderElector | None,
) -> Callable[[str, Mapping[str, str], bytes], bool] | None:
    """How a standby hands a hook to the leader: to the URL the leader wrote on the
    Lease, if it wrote one."""
    if elector is None:
        return None
    from gitsync.clients.peer import forward_hook  # noqa: PLC0415 - see TYPE_CHECKING above

    def forward(path: str, headers: Mapping[str, str], body: bytes) -> bool:
        url = elector.leader_url
        return url is not None and forward_hook(url, path, headers=headers, body=body)

    return forward


def _elector(
    options: Mapping[str, Any],
    *,
    namespace: str | None,
    name: str,
    timings: tuple[int, float, float],
    leader_url: str | None,
) -> LeaderElector:
    from gitsync.clients.kube import KubeClient  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.election import LeaderElector, default_identity  # noqa: PLC0415 - see TYPE_CHECKING above
    from gitsync.leader import Timings  # noqa: PLC0415 - see TYPE_CHECKING above

    lease_duration, renew_deadline, retry_period = timings
    checked = Timings(lease_duration, renew_deadline, retry_period)
    serviceaccount_dir: Path = options["serviceaccount_dir"]
    if namespace is None:
        try:
            namespace = (serviceaccount_dir / "namespace").read_text().strip()
        except OSError as exc:
            raise ConfigurationError(
                f"--leader-elect needs --lease-namespace (no {serviceaccount_dir}/namespace)"
            ) from exc
    # One connection of its own, timing out well within the renew deadline.
    lease_client = KubeClient.connect(
        options["kubeconfig"],
        context=options["kube_context"],
        serviceaccount_dir=serviceaccount_dir,
        timeout=(retry_period, renew_deadline / 2),
        concurrency=1,
    )
    return LeaderElector(
        lease_client,
        namespace=namespace,
        name=name,
        identity=default_identity(),
        timings=checked,
        leader_url=leader_url,
    )


def main() -> None:
    """Console-script entry point: turns gitsync errors into a message and exit code 2.

    The message is redacted (a usage error may quote a URL given with a token), and in
    ``--log-format json`` it is the stream's last JSON line, so the stream stays JSON.

    The process then ends at once, as mypy's does: once the output is flushed there is
    nothing left to do, and freeing the heap object by object took 0.1 s of a no-op
    ``gitsync sync`` at N=1,000 and 0.5 s at N=10,000.
    """
    try:
        _main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    if isinstance(code, str):  # sys.exit("message"), as Python itself would show it
        _echo_err(code)
        code = 1
    with contextlib.suppress(OSError):  # a closed pipe: nothing more can be said
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code or 0)


def _main() -> None:
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
