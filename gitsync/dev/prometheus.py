"""A real Prometheus server for the local control plane.

Canary analysis asks Prometheus for a revision's error ratio and latency; to develop
and test it against the real query engine (``rate``, ``histogram_quantile``, staleness,
NaN for 0/0) rather than a mock, :func:`gitsync.dev.controlplane.up` can run the
Prometheus server that Debian packages (``apt-get install prometheus``; hack/setup
installs it) beside the dev controllers, scraping their synthetic per-revision metrics
(:mod:`gitsync.dev.controllers.metrics`) every second.

This module knows what Prometheus needs: the binary, the configuration, the command
line and the readiness endpoint. Starting, recording and stopping the process is
:mod:`gitsync.dev.controlplane`'s, as for etcd and kube-apiserver. Prometheus only
ever listens on 127.0.0.1, on a port the control plane chose free; never on its
default 9090, where a system Prometheus may run.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import yaml

from gitsync.errors import ConfigurationError

__all__ = [
    "JOB",
    "SCRAPE_INTERVAL_S",
    "argv",
    "find_binary",
    "marker",
    "ready_url",
    "write_config",
]

JOB: Final = "gitsync-dev-controllers"
SCRAPE_INTERVAL_S: Final = 1
# Dev data is worth a day at most; without a limit the folder would grow for weeks.
_RETENTION: Final = "1d"


def find_binary() -> Path:
    """The ``prometheus`` on PATH."""
    found = shutil.which("prometheus")
    if found is None:
        raise ConfigurationError(
            "prometheus not found on PATH: install the Prometheus server "
            "(Debian: apt-get install --no-install-recommends prometheus; hack/setup does)"
        )
    return Path(found)


def write_config(path: Path, *, metrics_url: str, job: str = JOB) -> bool:
    """Write the scrape configuration for one metrics endpoint; True when it changed.

    ``honor_labels`` keeps the exposed ``namespace`` and ``revision`` labels as they
    are, whatever target labels Prometheus adds.
    """
    url = urlsplit(metrics_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ConfigurationError(f"not a metrics URL: {metrics_url!r}")
    interval = f"{SCRAPE_INTERVAL_S}s"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": job,
                "honor_labels": True,
                "scheme": url.scheme,
                "metrics_path": url.path or "/metrics",
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "static_configs": [{"targets": [url.netloc]}],
            }
        ],
    }
    text = "# Written by gitsync dev up; rewritten at every start.\n" + yaml.safe_dump(
        config, sort_keys=False
    )
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return True


def argv(binary: Path, *, config: Path, data: Path, port: int) -> list[str]:
    return [
        str(binary),
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--storage.tsdb.retention.time={_RETENTION}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]


def marker(data: Path) -> str:
    """What only this folder's Prometheus has on its command line (its data folder)."""
    return f"--storage.tsdb.path={data}"


def ready_url(address: str) -> str:
    """The endpoint that answers 200 once Prometheus serves queries."""
    return f"{address}/-/ready"
