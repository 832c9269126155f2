"""Dev controllers: stand-ins for KServe, the Kubeflow Training Operator and Kubeflow Trainer.

The local control plane (:mod:`gitsync.dev.controlplane`) runs a real kube-apiserver
with the real CRDs, but not the controllers behind them: those need a container
runtime. Without them an InferenceService or a TFJob would never get a status, and
gitsync's health checks, rollouts and tests would have nothing to look at. These
simulators play the controllers' part, like kwok does for nodes and pods: they watch
the objects and write only their ``status`` subresource, moving it the way the real
controllers document and implement it, on a configurable clock.

They are for development and tests only. Each simulator is a pure function from an
object and the time to its next status (:mod:`.inferenceservice` and :mod:`.standard`
for the two KServe modes, :mod:`.jobs`, :mod:`.trainjobs`); the API-server side lives
in :mod:`.runner`; ``python -m gitsync.dev.controllers`` runs them all in one process.
"""

from gitsync.dev.controllers.inferenceservice import IsvcSettings, reconcile_inference_service
from gitsync.dev.controllers.jobs import JobSettings, reconcile_job
from gitsync.dev.controllers.runner import FIELD_MANAGER, Controller, Outcome

__all__ = [
    "FIELD_MANAGER",
    "Controller",
    "IsvcSettings",
    "JobSettings",
    "Outcome",
    "reconcile_inference_service",
    "reconcile_job",
]
