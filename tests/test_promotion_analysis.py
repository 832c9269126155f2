"""A staging canary whose analysis fails never reaches production: the analysis
(a real Prometheus over the dev controllers' request metrics) rolls staging back,
and production, which follows staging, keeps the model staging proved before."""

from __future__ import annotations

import time

from gitsync.clients.kube import KubeClient
from gitsync.reconciler import Reconciler

from .specrepo import SpecRepo, git
from .test_canary import canary_model
from .test_pipelines import daemon, model, repo, served, status, until

__all__ = ["daemon", "repo"]  # fixtures shared with test_pipelines


def test_a_failed_staging_analysis_never_promotes(
    daemon: Reconciler, repo: SpecRepo, kube: KubeClient, namespace: str, prometheus_url: str
) -> None:
    follow = {"fromModelDeployment": {"name": "fraud", "healthyFor": "2s"}}
    repo.write("staging.yaml", canary_model(namespace, prometheus_url, version=1))
    repo.write("production.yaml", model(namespace, "production", follow))
    repo.commit("staging serves v1 behind a canary analysis; production follows it")
    until(daemon, lambda: served(kube, namespace, "production") == "s3://models/fraud/v1")

    bad = canary_model(
        namespace, prometheus_url, version=2, annotations={"dev.gitsync.io/error-rate": "0.3"}
    )
    repo.write("staging.yaml", bad)
    repo.commit("staging tries v2, which fails one request in three")

    def rolled_back() -> bool:
        assert served(kube, namespace, "production") == "s3://models/fraud/v1"
        return status(repo, namespace, "ModelDeployment", "fraud")["phase"] == "RolledBack"

    until(daemon, rolled_back, seconds=60)
    staging = status(repo, namespace, "ModelDeployment", "fraud")
    assert staging["rollout"]["evidence"][0].startswith("error-rate 0.3"), staging["rollout"]

    deadline = time.monotonic() + 4  # twice the hold
    while time.monotonic() < deadline:
        daemon.cycle()
        assert served(kube, namespace, "production") == "s3://models/fraud/v1"
        time.sleep(0.3)
    held = status(repo, namespace, "ModelDeployment", "production")
    assert (held["phase"], held["model"]["storageUri"]) == ("Healthy", "s3://models/fraud/v1")
    why = f"ModelDeployment {namespace}/fraud is RolledBack, not Healthy"
    assert held["model"]["fromTrainingRun"]["held"] == why
    # The status branch says why production did not move, once, not every cycle.
    told = git("log", "--format=%B", "gitsync/status", cwd=repo.remote)
    assert told.count(f"promotion held: {why}") == 1, told
