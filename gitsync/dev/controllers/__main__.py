"""``python -m gitsync.dev.controllers``: run every dev controller in one process.

:func:`gitsync.dev.controlplane.up` starts this next to the local kube-apiserver,
as ``python -m gitsync.dev.controllers --kubeconfig DIR/kubeconfig --metrics-port N``;
it runs until SIGTERM or SIGINT. The simulated delays default to a few seconds so
that a developer watching ``kubectl get`` sees every transition; tests shorten them
per object with annotations. The synthetic request metrics of :mod:`.metrics` are
served for Prometheus when ``--metrics-port`` is given. These are simulators for
development and tests only.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from gitsync.clients.kube import KubeClient
from gitsync.dev.controllers import inferenceservice, jobs, metrics, trainjobs
from gitsync.dev.controllers.runner import Controller, Outcome
from gitsync.errors import ConfigurationError
from gitsync.log import configure as configure_logging

_STOP_TIMEOUT_S = 1.5

log = structlog.get_logger("gitsync.dev.controllers")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gitsync.dev.controllers",
        description="Simulate the KServe, Kubeflow Training Operator and Trainer controllers "
        "(status only) against a development API server.",
    )
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, help="default: $KUBECONFIG or ~/.kube/config"
    )
    # String defaults go through `type`, so a malformed environment variable is a
    # usage error rather than a crash.
    parser.add_argument(
        "--isvc-ready-delay",
        type=_seconds,
        default=os.environ.get("GITSYNC_DEV_ISVC_READY_DELAY", "2"),
        help="seconds until a new InferenceService revision is ready "
        "(env GITSYNC_DEV_ISVC_READY_DELAY; annotation dev.gitsync.io/ready-delay)",
    )
    parser.add_argument(
        "--job-start-delay",
        type=_seconds,
        default=os.environ.get("GITSYNC_DEV_JOB_START_DELAY", "1"),
        help="seconds from a job's start to Running "
        "(env GITSYNC_DEV_JOB_START_DELAY; annotation dev.gitsync.io/start-delay)",
    )
    parser.add_argument(
        "--job-run-duration",
        type=_seconds,
        default=os.environ.get("GITSYNC_DEV_JOB_RUN_DURATION", "3"),
        help="seconds from Running to Succeeded or Failed "
        "(env GITSYNC_DEV_JOB_RUN_DURATION; annotation dev.gitsync.io/run-duration)",
    )
    parser.add_argument(
        "--metrics-port",
        type=_port,
        default=os.environ.get("GITSYNC_DEV_METRICS_PORT"),
        help="serve synthetic per-revision request metrics for Prometheus on "
        "http://127.0.0.1:PORT/metrics (0: any free port; env GITSYNC_DEV_METRICS_PORT; "
        "default: not served)",
    )
    # The same choices as gitsync's own --log-format and --log-level.
    parser.add_argument(
        "--log-format",
        default=os.environ.get("GITSYNC_DEV_CONTROLLERS_LOG_FORMAT", "text"),
        choices=["text", "json"],
        help="env GITSYNC_DEV_CONTROLLERS_LOG_FORMAT",
    )
    parser.add_argument(
        "--log-level",
        type=str.lower,
        default=os.environ.get("GITSYNC_DEV_CONTROLLERS_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="env GITSYNC_DEV_CONTROLLERS_LOG_LEVEL",
    )
    return parser


def _leave_alone(_obj: Mapping[str, Any], _now: datetime) -> Outcome:
    return Outcome()


def _find_runtime(
    runtimes: Mapping[str, Controller], kind: str, namespace: str, name: str
) -> Mapping[str, Any] | None:
    controller = runtimes.get(kind)
    for obj in controller.objects() if controller else []:
        metadata = obj.get("metadata") or {}
        if metadata.get("name") == name and (metadata.get("namespace") or "") == namespace:
            return obj
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(json=args.log_format == "json", level=args.log_level)
    try:
        kube = KubeClient.from_kubeconfig(args.kubeconfig)
    except ConfigurationError as exc:
        log.error("cannot start", error=str(exc))  # noqa: TRY400 - the message is the whole story
        return 2

    isvc_settings = inferenceservice.IsvcSettings(ready_delay=args.isvc_ready_delay)
    job_settings = jobs.JobSettings(
        start_delay=args.job_start_delay, run_duration=args.job_run_duration
    )
    isvc_controller = Controller(
        kube,
        api_version=inferenceservice.API_VERSION,
        kind=inferenceservice.KIND,
        reconcile=functools.partial(
            inferenceservice.reconcile_inference_service, settings=isvc_settings
        ),
    )
    controllers = [
        isvc_controller,
        *(
            Controller(
                kube,
                api_version=jobs.API_VERSION,
                kind=kind,
                reconcile=functools.partial(jobs.reconcile_job, settings=job_settings),
            )
            for kind in jobs.JOB_KINDS
        ),
    ]
    # Watched only for their replicated jobs, which a TrainJob's status lists.
    runtimes = {
        kind: Controller(kube, api_version=trainjobs.API_VERSION, kind=kind, reconcile=_leave_alone)
        for kind in trainjobs.RUNTIME_KINDS
    }
    controllers += [
        *runtimes.values(),
        Controller(
            kube,
            api_version=trainjobs.API_VERSION,
            kind=trainjobs.KIND,
            reconcile=functools.partial(
                trainjobs.reconcile_train_job,
                settings=job_settings,
                runtimes=functools.partial(_find_runtime, runtimes),
            ),
        ),
    ]

    metrics_server = None
    if args.metrics_port is not None:
        try:
            metrics_server = metrics.MetricsServer(isvc_controller.objects, port=args.metrics_port)
        except OSError as exc:
            log.error(  # noqa: TRY400 - the message is the whole story
                "cannot serve metrics", address=f"127.0.0.1:{args.metrics_port}", error=str(exc)
            )
            kube.close()
            return 2

    stop = threading.Event()
    received: list[signal.Signals] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # No logging here: the main thread may be inside a log call, holding
        # structlog's non-reentrant write lock, when the signal arrives.
        received.append(signal.Signals(signum))
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    for controller in controllers:
        controller.start()
    if metrics_server is not None:
        metrics_server.start()
        log.info("synthetic request metrics", url=metrics_server.url)
    log.info(
        "dev controllers running",
        server=kube.server,
        isvc_ready_delay_s=isvc_settings.ready_delay,
        job_start_delay_s=job_settings.start_delay,
        job_run_duration_s=job_settings.run_duration,
    )
    # A timed wait keeps the main thread responsive to signals on every platform.
    while not stop.wait(0.5):
        pass
    log.info("stopping", signal=received[0].name)
    if metrics_server is not None:
        metrics_server.stop()
    for controller in controllers:
        controller.stop()
    for controller in controllers:
        controller.join(_STOP_TIMEOUT_S / len(controllers))
    kube.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
