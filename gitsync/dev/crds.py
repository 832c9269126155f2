"""Install CustomResourceDefinitions into the local control plane.

The full KServe InferenceService CRD is ~2 MB of YAML: client-side apply would store
it again in a ``last-applied-configuration`` annotation over the 256 KiB limit, so
CRDs go in by server-side apply (create-or-update in one request, a no-op when
unchanged). Each is then awaited until ``Established``, since objects of a kind
cannot be created before.

A folder may also hold objects of those kinds, such as the ClusterTrainingRuntimes
Kubeflow Trainer ships (a TrainJob names one): they are applied once every CRD is
established, so a dev cluster has the runtimes a real Trainer install has.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from gitsync.clients.kube import KubeClient
from gitsync.errors import ConfigurationError, ControlPlaneError

__all__ = ["default_crd_dirs", "install_crds", "install_objects", "read_crds"]

FIELD_MANAGER = "gitsync-dev"
_CRD_API = "apiextensions.k8s.io/v1"
_ESTABLISH_TIMEOUT_S = 60.0


def default_crd_dirs() -> list[Path]:
    """``$GITSYNC_CRDS_DIR`` (a path list), or nothing."""
    value = os.environ.get("GITSYNC_CRDS_DIR", "")
    return [Path(part) for part in value.split(os.pathsep) if part]


def read_crds(folders: Sequence[Path]) -> Iterator[dict[str, Any]]:
    """Every CRD document in the YAML files under ``folders`` (recursively, sorted)."""
    return (d for d in _documents(folders) if d.get("kind") == "CustomResourceDefinition")


def _documents(folders: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for folder in folders:
        if not folder.is_dir():
            raise ConfigurationError(f"CRD folder {folder} does not exist")
        for path in sorted(folder.rglob("*.y*ml")):
            try:
                with path.open("rb") as stream:
                    documents = list(yaml.load_all(stream, Loader=yaml.CSafeLoader))
            except yaml.YAMLError as exc:
                raise ConfigurationError(f"{path}: not valid YAML: {exc}") from exc
            yield from (document for document in documents if isinstance(document, dict))


def install_crds(kubeconfig: Path, folders: Sequence[Path]) -> list[str]:
    """Server-side apply every CRD under ``folders`` and wait until each is Established."""
    crds = list(read_crds(folders))
    if not crds:
        return []
    client = KubeClient.from_kubeconfig(kubeconfig)
    try:
        names = []
        for crd in crds:
            crd.pop("status", None)
            client.apply(crd, field_manager=FIELD_MANAGER, force=True)
            names.append(str(crd["metadata"]["name"]))
        for name in names:
            _wait_established(client, name)
        return names
    finally:
        client.close()


def install_objects(kubeconfig: Path, folders: Sequence[Path]) -> list[str]:
    """Server-side apply every document under ``folders`` that is not a CRD (call
    after :func:`install_crds`); ``Kind name`` of each."""
    objects = [d for d in _documents(folders) if d.get("kind") != "CustomResourceDefinition"]
    if not objects:
        return []
    client = KubeClient.from_kubeconfig(kubeconfig)
    try:
        for obj in objects:
            client.apply(obj, field_manager=FIELD_MANAGER, force=True)
        return [f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')}" for obj in objects]
    finally:
        client.close()


def _wait_established(client: KubeClient, name: str) -> None:
    deadline = time.monotonic() + _ESTABLISH_TIMEOUT_S
    while time.monotonic() < deadline:
        live = client.get(_CRD_API, "CustomResourceDefinition", name) or {}
        conditions = (live.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return
        time.sleep(0.1)
    raise ControlPlaneError(f"CRD {name} not Established after {_ESTABLISH_TIMEOUT_S:.0f}s")
