"""The ``gitsync`` command line: parses options and wires modules together, nothing more.

Every option can also come from a ``GITSYNC_<OPTION>`` environment variable
(``--crds`` from ``GITSYNC_CRDS_DIR``, a ``:``-separated list).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from gitsync import __version__
from gitsync.errors import GitsyncError

__all__ = ["main"]


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


@click.group(
    context_settings={"auto_envvar_prefix": "GITSYNC", "help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="gitsync")
def cli() -> None:
    """GitOps for ML: reconcile model deployments and training runs from Git."""


@cli.group()
def dev() -> None:
    """A local Kubernetes control plane (real kube-apiserver + etcd) for development."""


_DIR_OPTION = click.option(
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
@click.option(
    "--crds",
    "crd_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="GITSYNC_CRDS_DIR",
    help="Folder of CRD YAML files to install (repeatable).",
)
@click.option(
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
