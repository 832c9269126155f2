"""Policies as code: the engine's contract, the quantity library, the shipped policies.

Everything runs the real CEL runtime on real policy YAML; nothing is mocked.
"""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsync.errors import ConfigurationError
from gitsync.loading import Entry, Severity
from gitsync.policy import (
    LIBRARY_DIR,
    PolicyResult,
    PolicySet,
    PolicySeverity,
    VerdictMemo,
    enforce,
    entry_object,
    load_library,
    load_policies,
    load_policy_dirs,
)
from gitsync.render import RenderContext, render
from gitsync.specs import SPEC_MODELS
from tests.examples import EXAMPLES, examples_context, load_examples

SHIPPED = sorted(path.stem for path in LIBRARY_DIR.glob("*.yaml"))
DEFAULT_NAMESPACE = "ml-serving"


EXAMPLE_POLICIES = Path(__file__).resolve().parents[1] / "examples" / "repo" / "policies"


@pytest.fixture(scope="module")
def library() -> PolicySet:
    """The shipped library with the example organisation's tenancy map switched on."""
    policies, diagnostics = load_library([EXAMPLE_POLICIES])
    assert [d.message for d in diagnostics] == [
        "policy 'namespace-tenancy' replaces the shipped one from "
        f"{Path(__file__).resolve().parents[1] / 'policies' / 'namespace-tenancy.yaml'}"
    ]
    return policies


def test_shipped_tenancy_is_off_until_a_repo_names_its_teams() -> None:
    shipped, diagnostics = load_library()
    assert diagnostics == []
    results = shipped.evaluate(
        kind="ModelDeployment",
        object={"metadata": {"name": "m", "labels": {"team": "anyone"}}},
        rendered=None,
        old_object=None,
        namespace="anywhere",
    )
    (tenancy,) = [r for r in results if r.policy == "namespace-tenancy"]
    assert tenancy.passed


def policy_yaml(
    *validations: str,
    variables: str = "",
    extra: str = "",
    kinds: str = "[ModelDeployment, TrainingRun]",
    name: str = "test-policy",
) -> bytes:
    """A policy document; each validation is the YAML of one list item's body."""
    items = "".join(
        "    - " + textwrap.indent(v.strip(), "      ").lstrip() + "\n" for v in validations
    )
    sections = "".join(
        textwrap.indent(textwrap.dedent(section).strip(), "  ") + "\n"
        for section in (variables, extra)
        if section
    )
    return (
        "apiVersion: gitsync.io/v1alpha1\n"
        "kind: Policy\n"
        f"metadata: {{name: {name}}}\n"
        "spec:\n"
        f"  match: {{kinds: {kinds}}}\n"
        f"{sections}"
        "  validations:\n"
        f"{items}"
    ).encode()


def compile_one(content: bytes) -> PolicySet:
    policies, diagnostics = load_policies([("policies/test.yaml", content)])
    assert [str(d) for d in diagnostics] == []
    assert len(policies) == 1
    return policies


def load_errors(content: bytes, path: str = "policies/bad.yaml") -> list[str]:
    policies, diagnostics = load_policies([(path, content)])
    assert len(policies) == 0, "a policy with errors must not load"
    return [str(d) for d in diagnostics]


# --- specs as users write them ---------------------------------------------------------

MODEL: dict[str, Any] = {
    "apiVersion": "gitsync.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "fraud", "labels": {"team": "risk"}},
    "spec": {
        "model": {"format": "sklearn", "storageUri": "s3://models/fraud/v7"},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
    },
}

ISVC: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "plain", "labels": {"team": "risk"}},
    "spec": {
        "predictor": {
            "model": {
                "modelFormat": {"name": "sklearn"},
                "storageUri": "s3://models/plain/v1",
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
            }
        },
        "transformer": {
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "ghcr.io/acme/features:1.0",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }
            ]
        },
    },
}
CUSTOM_LATEST = {"name": "kserve-container", "image": "ghcr.io/acme/custom:latest"}

TRAINING: dict[str, Any] = {
    "apiVersion": "gitsync.io/v1alpha1",
    "kind": "TrainingRun",
    "metadata": {"name": "fraud-train", "namespace": "ml-training", "labels": {"team": "risk"}},
    "spec": {
        "framework": "tensorflow",
        "image": "ghcr.io/acme/fraud-train:1.4.0",
        "replicas": {"chief": 1, "worker": 2, "ps": 1},
        "resources": {"limits": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"}},
        "output": "s3://models/fraud/{run}",
    },
}


GPU = "nvidia.com/gpu"

TRAINJOB: dict[str, Any] = {
    "apiVersion": "gitsync.io/v1alpha1",
    "kind": "TrainingRun",
    "metadata": {"name": "finetune", "namespace": "ml-training", "labels": {"team": "nlp"}},
    "spec": {
        "runtimeRef": {"name": "torch-distributed"},
        "image": "ghcr.io/acme/finetune:0.3.0",
        "numNodes": 2,
        "resources": {"limits": {"cpu": "8", "memory": "64Gi", GPU: "4"}},
    },
}


def spec(base: dict[str, Any], *edits: tuple[str | tuple[str, ...], Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``("a.b.c", value)`` edits (a tuple path for keys
    with dots); ``...`` as the value deletes."""
    document = copy.deepcopy(base)
    for path, value in edits:
        *parents, last = path.split(".") if isinstance(path, str) else path
        node = document
        for part in parents:
            node = node.setdefault(part, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    return document


def rendered_for(document: dict[str, Any]) -> dict[str, Any] | None:
    """The rendering gitsync would apply, or None for a spec its schema rejects (a
    field the model does not know yet, such as canary steps)."""
    context = RenderContext(instance="test", default_namespace=DEFAULT_NAMESPACE)
    model = SPEC_MODELS.get(document["kind"])
    if model is None:
        return render(Entry("specs/x.yaml", 0, 1, manifest=document), context)
    try:
        validated = model.model_validate(document)
    except ValueError:
        return None
    return render(Entry("specs/x.yaml", 0, 1, spec=validated), context)


def verdict(
    policies: PolicySet,
    name: str,
    document: dict[str, Any],
    *,
    old: dict[str, Any] | None = None,
) -> PolicyResult | None:
    """The result of policy ``name`` for a raw spec, rendered when it can be."""
    namespace = document["metadata"].get("namespace") or DEFAULT_NAMESPACE
    results = policies.evaluate(
        kind=document["kind"],
        object=document,
        rendered=rendered_for(document),
        old_object=old,
        namespace=namespace,
    )
    found = [r for r in results if r.policy == name]
    assert len(found) <= 1
    return found[0] if found else None


# --- the shipped library ---------------------------------------------------------------


def test_library_ships_the_seven_policies(library: PolicySet) -> None:
    assert sorted(library.names) == SHIPPED
    assert sorted(library.names) == [
        "allowed-storage-schemes",
        "canary-steps",
        "cap-training-gpus",
        "namespace-tenancy",
        "require-pinned-images",
        "require-resource-requests",
        "require-team-label",
    ]
    for policy in library:
        # Each file says why its severity is what it is.
        text = Path(policy.source).read_text()
        assert f"# {policy.severity.value}:" in text, policy.source


def test_examples_pass_every_shipped_policy(library: PolicySet) -> None:
    config, loaded = load_examples()
    assert not loaded.diagnostics
    context = examples_context(config, loaded, instance="examples")
    evaluated: dict[str, list[str]] = {}
    for entry in loaded.entries:
        results = library.evaluate_entry(
            entry, rendered=render(entry, context), default_namespace=config.defaults.namespace
        )
        assert [str(r) for r in results if not r.passed] == [], entry.path
        evaluated[entry.path] = sorted(r.policy for r in results)
    # The policies really ran: every spec met all that select its kind (canary-steps
    # only applies to canary rollouts), and the plain manifest met none.
    model_policies = sorted(set(SHIPPED) - {"cap-training-gpus", "canary-steps"})
    training_policies = sorted(set(SHIPPED) - {"canary-steps"})
    assert evaluated == {
        "models/churn-predictor.yaml": model_policies,
        # A canary: canary-steps judges it too.
        "models/credit-limit.yaml": sorted([*model_policies, "canary-steps"]),
        "models/fraud-detector.yaml": model_policies,
        "models/income-explainer.yaml": model_policies,
        "models/review-sentiment.yaml": model_policies,
        "models/search-ranker.yaml": model_policies,
        "models/support-intent.yaml": model_policies,
        # The pipeline, judged on what it serves once walked (fromTrainingRun and
        # fromModelDeployment have no storageUri of their own).
        "models/support-llm-production.yaml": model_policies,
        "models/support-llm-staging.yaml": model_policies,
        "platform/checkpoints.yaml": [],
        "platform/service-accounts.yaml": [],
        "training/fraud-train.yaml": training_policies,
        "training/intent-finetune.yaml": training_policies,
        "training/support-llm.yaml": training_policies,
    }


def test_entry_object_is_the_spec_as_written() -> None:
    _, loaded = load_examples()
    for entry in loaded.entries:
        written = yaml.safe_load((EXAMPLES / entry.path).read_text())
        assert entry_object(entry) == written, entry.path


SHIPPED_CASES = [
    # require-team-label
    ("require-team-label", MODEL, None),
    ("require-team-label", TRAINING, None),
    (
        "require-team-label",
        spec(MODEL, ("metadata.labels", ...)),
        "metadata.labels.team is required: name the team that owns this object",
    ),
    (
        "require-team-label",
        spec(TRAINING, ("metadata.labels", {"owner": "risk"})),
        "metadata.labels.team is required: name the team that owns this object",
    ),
    (
        "require-team-label",
        spec(MODEL, ("metadata.labels", {"team": "  "})),
        "metadata.labels.team is required: name the team that owns this object",
    ),
    # require-resource-requests
    ("require-resource-requests", MODEL, None),
    ("require-resource-requests", TRAINING, None),
    (
        "require-resource-requests",
        spec(TRAINING, ("spec.resources", {"requests": {"cpu": "2"}, "limits": {"memory": "4Gi"}})),
        None,
    ),
    (
        "require-resource-requests",
        spec(MODEL, ("spec.resources", ...)),
        "spec.resources.requests must set cpu and memory",
    ),
    (
        "require-resource-requests",
        spec(MODEL, ("spec.resources", {"limits": {"cpu": "1", "memory": "1Gi"}})),
        "spec.resources.requests must set cpu and memory",
    ),
    (
        "require-resource-requests",
        spec(MODEL, ("spec.resources.requests", {"cpu": "1"})),
        "spec.resources.requests must set memory",
    ),
    (
        "require-resource-requests",
        spec(MODEL, ("spec.transformer", {"image": "ghcr.io/acme/features:1.0"})),
        "spec.transformer.resources.requests must set cpu and memory",
    ),
    (
        "require-resource-requests",
        spec(TRAINING, ("spec.resources", ...)),
        "spec.resources must set cpu and memory (as requests, or as limits, which requests "
        "default to)",
    ),
    (
        "require-resource-requests",
        spec(TRAINING, ("spec.resources", {"limits": {"nvidia.com/gpu": "1", "cpu": "2"}})),
        "spec.resources must set memory (as requests, or as limits, which requests default to)",
    ),
    # require-pinned-images
    ("require-pinned-images", MODEL, None),
    ("require-pinned-images", TRAINING, None),
    ("require-pinned-images", spec(TRAINING, ("spec.image", "localhost:5000/train:2.1")), None),
    ("require-pinned-images", spec(TRAINING, ("spec.image", "train@sha256:" + "a" * 64)), None),
    (
        "require-pinned-images",
        spec(TRAINING, ("spec.image", "train:latest@sha256:" + "0" * 64)),
        None,
    ),
    (
        "require-pinned-images",
        spec(TRAINING, ("spec.image", "ghcr.io/acme/train")),
        "spec.image ghcr.io/acme/train: pin the image to a tag (name:1.2.3) or a digest "
        "(name@sha256:...)",
    ),
    (
        "require-pinned-images",
        spec(TRAINING, ("spec.image", "localhost:5000/train")),
        "spec.image localhost:5000/train: pin the image to a tag (name:1.2.3) or a digest "
        "(name@sha256:...)",
    ),
    (
        "require-pinned-images",
        spec(TRAINING, ("spec.image", "ghcr.io/acme/train:latest")),
        "spec.image ghcr.io/acme/train:latest: the latest tag moves; pin a version or a digest",
    ),
    (
        "require-pinned-images",
        spec(
            MODEL,
            (
                "spec.transformer",
                {"image": "features:latest", "resources": MODEL["spec"]["resources"]},
            ),
        ),
        "spec.transformer.image features:latest: the latest tag moves; pin a version or a digest",
    ),
    (
        # cel-expr-python cuts strings at NUL: the engine must not let that hide ':latest'
        "require-pinned-images",
        spec(TRAINING, ("spec.image", "ghcr.io/acme/train:1.0\x00:latest")),
        "spec.image ghcr.io/acme/train:1.0\ufffd:latest: the latest tag moves; pin a version or "
        "a digest",
    ),
    (
        "require-pinned-images",
        spec(TRAINING, ("spec.image", "ghcr.io/acme/train:")),
        "spec.image ghcr.io/acme/train:: pin the image to a tag (name:1.2.3) or a digest "
        "(name@sha256:...)",
    ),
    # allowed-storage-schemes
    ("allowed-storage-schemes", MODEL, None),
    ("allowed-storage-schemes", spec(MODEL, ("spec.model.storageUri", "gs://m/churn")), None),
    ("allowed-storage-schemes", spec(MODEL, ("spec.model.storageUri", "pvc://vol/m")), None),
    ("allowed-storage-schemes", spec(MODEL, ("spec.model.storageUri", "hf://acme/intent")), None),
    ("allowed-storage-schemes", TRAINING, None),
    ("allowed-storage-schemes", spec(TRAINING, ("spec.output", ...)), None),
    (
        "allowed-storage-schemes",
        spec(MODEL, ("spec.model.storageUri", "https://example.com/model.bin")),
        "spec.model.storageUri https://example.com/model.bin uses a storage scheme outside the "
        "allowlist (s3://, gs://, pvc://, hf://)",
    ),
    (
        "allowed-storage-schemes",
        spec(MODEL, ("spec.model.storageUri", "s3x://bucket/model")),
        "spec.model.storageUri s3x://bucket/model uses a storage scheme outside the allowlist "
        "(s3://, gs://, pvc://, hf://)",
    ),
    (
        "allowed-storage-schemes",
        spec(TRAINING, ("spec.output", "azure://acct/models/{run}")),
        "spec.output azure://acct/models/{run} uses a storage scheme outside the allowlist "
        "(s3://, gs://, pvc://, hf://)",
    ),
    # cap-training-gpus: limit per replica x replicas of every role, at most 8
    ("cap-training-gpus", TRAINING, None),  # 1 x (1 + 2 + 1) = 4
    (
        "cap-training-gpus",
        spec(TRAINING, (("spec", "resources", "limits", GPU), "2")),  # 2 x 4 = 8
        None,
    ),
    ("cap-training-gpus", spec(TRAINING, ("spec.resources", ...)), None),  # no GPUs at all
    (
        "cap-training-gpus",
        spec(TRAINING, ("spec.replicas", ...), ("spec.resources.limits", {"nvidia.com/gpu": 8})),
        None,  # the default single worker, and an unquoted YAML number
    ),
    (
        "cap-training-gpus",
        spec(TRAINING, ("spec.replicas.worker", 3), (("spec", "resources", "limits", GPU), "2")),
        "the run asks for 10 nvidia.com/gpu in total (per-replica limit x replicas), above the "
        "cap of 8 per training run",
    ),
    (
        "cap-training-gpus",
        spec(TRAINING, ("spec.replicas", ...), ("spec.resources.limits", {"nvidia.com/gpu": "9"})),
        "the run asks for 9 nvidia.com/gpu in total (per-replica limit x replicas), above the "
        "cap of 8 per training run",
    ),
    (
        "cap-training-gpus",
        spec(
            TRAINING,
            ("spec.framework", "pytorch"),
            ("spec.replicas", {"master": 1, "worker": 4}),
            (("spec", "resources", "limits", GPU), "2"),
        ),
        "the run asks for 10 nvidia.com/gpu in total (per-replica limit x replicas), above the "
        "cap of 8 per training run",
    ),
    # per-role overrides and TrainJobs
    (
        "require-resource-requests",
        spec(
            TRAINING,
            ("spec.resources", ...),
            ("spec.replicas", {"ps": 1}),
            ("spec.roles", {"ps": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}}),
        ),
        None,  # every running role sets its own: the shared ones are not needed
    ),
    (
        "require-resource-requests",
        spec(TRAINING, ("spec.roles", {"ps": {"resources": {"requests": {"cpu": "1"}}}})),
        "spec.roles.ps.resources must set memory (as requests, or as limits, which requests "
        "default to)",
    ),
    (
        "require-resource-requests",
        spec(
            TRAINING,
            ("spec.resources", ...),
            ("spec.roles", {"ps": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}}),
        ),
        "spec.resources must set cpu and memory (as requests, or as limits, which requests "
        "default to)",  # the chief and the workers still use the shared ones
    ),
    ("require-resource-requests", TRAINJOB, None),
    (
        "require-resource-requests",
        spec(TRAINJOB, ("spec.resources", ...)),
        "spec.resources must set cpu and memory (as requests, or as limits, which requests "
        "default to)",
    ),
    ("require-pinned-images", TRAINJOB, None),
    ("require-pinned-images", spec(TRAINJOB, ("spec.image", ...)), None),  # the runtime's
    (
        "require-pinned-images",
        spec(TRAINING, ("spec.roles", {"ps": {"image": "ghcr.io/acme/ps"}})),
        "spec.roles.ps.image ghcr.io/acme/ps: pin the image to a tag (name:1.2.3) or a digest "
        "(name@sha256:...)",
    ),
    (
        "cap-training-gpus",
        spec(TRAINING, ("spec.roles", {"ps": {"resources": {"limits": {"cpu": "1"}}}})),
        None,  # 1 x (1 + 2) = 3: the PS has no GPU
    ),
    (
        "cap-training-gpus",
        spec(TRAINING, ("spec.roles", {"ps": {"resources": {"limits": {GPU: "6"}}}})),
        "the run asks for 9 nvidia.com/gpu in total (per-replica limit x replicas), above the "
        "cap of 8 per training run",
    ),
    ("cap-training-gpus", TRAINJOB, None),  # 2 nodes x 4
    (
        "cap-training-gpus",
        spec(TRAINJOB, ("spec.numNodes", 3)),
        "the run asks for 12 nvidia.com/gpu in total (per-replica limit x replicas), above the "
        "cap of 8 per training run",
    ),
    # canary-steps
    (
        "canary-steps",
        spec(
            MODEL,
            ("spec.rollout", {"strategy": "canary", "steps": [{"traffic": 10}, {"traffic": 50}]}),
        ),
        None,
    ),
    (
        "canary-steps",
        spec(MODEL, ("spec.rollout", {"strategy": "canary", "steps": [{"traffic": 50}]})),
        None,
    ),
    (
        "canary-steps",
        spec(
            MODEL,
            (
                "spec.rollout",
                {
                    "strategy": "canary",
                    "steps": [{"traffic": 5}, {"traffic": 20}, {"traffic": 99}],
                },
            ),
        ),
        None,
    ),
    (
        "canary-steps",
        spec(MODEL, ("spec.rollout", {"strategy": "canary"})),
        "a canary rollout needs spec.rollout.steps, e.g. [{traffic: 10}, {traffic: 50}]",
    ),
    (
        "canary-steps",
        spec(
            MODEL,
            ("spec.rollout", {"strategy": "canary", "steps": [{"traffic": 60}, {"traffic": 80}]}),
        ),
        "the first canary step sends 60% of traffic; start at 50% or less",
    ),
    (
        "canary-steps",
        spec(
            MODEL,
            ("spec.rollout", {"strategy": "canary", "steps": [{"traffic": 20}, {"traffic": 10}]}),
        ),
        "canary steps must increase strictly, got 20% -> 10%",
    ),
    (
        "canary-steps",
        spec(
            MODEL,
            (
                "spec.rollout",
                {
                    "strategy": "canary",
                    "steps": [{"traffic": 10}, {"traffic": 10}, {"traffic": 30}],
                },
            ),
        ),
        "canary steps must increase strictly, got 10% -> 10% -> 30%",
    ),
    (
        "canary-steps",
        spec(
            MODEL,
            ("spec.rollout", {"strategy": "canary", "steps": [{"traffic": 70}, {"traffic": 60}]}),
        ),
        "the first canary step sends 70% of traffic; start at 50% or less; "
        "canary steps must increase strictly, got 70% -> 60%",
    ),
    (
        "canary-steps",
        spec(MODEL, ("spec.rollout", {"strategy": "canary", "steps": [{"traffic": "10%"}]})),
        "every spec.rollout.steps[] entry needs traffic: a whole percentage from 1 to 99",
    ),
    (
        "canary-steps",
        spec(
            MODEL,
            ("spec.rollout", {"strategy": "canary", "steps": [{"traffic": 0}, {"weight": 5}]}),
        ),
        "every spec.rollout.steps[] entry needs traffic: a whole percentage from 1 to 99",
    ),
    (
        "canary-steps",
        spec(
            MODEL,
            ("spec.rollout", {"strategy": "canary", "steps": [{"traffic": 50}, {"traffic": 100}]}),
        ),
        "every spec.rollout.steps[] entry needs traffic: a whole percentage from 1 to 99",
    ),
    # namespace-tenancy (MODEL lands in the default namespace, ml-serving)
    ("namespace-tenancy", MODEL, None),
    ("namespace-tenancy", TRAINING, None),
    (
        "namespace-tenancy",
        spec(MODEL, ("metadata.labels.team", "support"), ("metadata.namespace", "ml-nlp")),
        None,
    ),
    (
        "namespace-tenancy",
        spec(MODEL, ("metadata.labels.team", "growth"), ("metadata.namespace", "ml-training")),
        "team growth may not deploy into namespace ml-training; its namespaces are ml-serving",
    ),
    (
        "namespace-tenancy",
        spec(TRAINING, ("metadata.labels.team", "support"), ("metadata.namespace", "ml-serving")),
        "team support may not deploy into namespace ml-serving; its namespaces are ml-nlp, "
        "ml-staging, ml-training",
    ),
    (
        "namespace-tenancy",
        spec(MODEL, ("metadata.labels.team", "ads")),
        "team ads has no namespaces in the tenancy map (params.teams)",
    ),
    (
        "namespace-tenancy",
        spec(MODEL, ("metadata.labels", ...)),
        "without a team label no namespace is allowed (see require-team-label)",
    ),
    # An InferenceService written as YAML meets the same policies as a ModelDeployment.
    ("require-pinned-images", ISVC, None),
    ("require-resource-requests", ISVC, None),
    ("allowed-storage-schemes", ISVC, None),
    ("require-team-label", ISVC, None),
    (
        "require-pinned-images",
        spec(ISVC, ("spec.predictor", {"containers": [CUSTOM_LATEST]})),
        "spec.predictor.containers[kserve-container].image ghcr.io/acme/custom:latest: "
        "the latest tag moves; pin a version or a digest",
    ),
    (
        "require-pinned-images",
        spec(ISVC, ("spec.explainer", {"art": {"type": "SquareAttack", "image": "art"}})),
        "spec.explainer.art.image art: pin the image to a tag (name:1.2.3) or a digest "
        "(name@sha256:...)",
    ),
    (
        "require-resource-requests",
        spec(ISVC, ("spec.predictor.model.resources", ...)),
        "spec.predictor.model.resources.requests must set cpu and memory",
    ),
    (
        "require-resource-requests",
        spec(ISVC, ("spec.transformer.containers", [{"name": "t", "image": "t:1"}])),
        "spec.transformer.containers[t].resources.requests must set cpu and memory",
    ),
    (
        "allowed-storage-schemes",
        spec(ISVC, ("spec.predictor.model.storageUri", "https://example.com/m.bin")),
        "spec.predictor.model.storageUri https://example.com/m.bin uses a storage scheme "
        "outside the allowlist (s3://, gs://, pvc://, hf://)",
    ),
    (
        "allowed-storage-schemes",
        spec(ISVC, ("spec.predictor.storageUris", [{"uri": "oci://registry/m:1"}])),
        "spec.predictor.storageUris oci://registry/m:1 uses a storage scheme outside the "
        "allowlist (s3://, gs://, pvc://, hf://)",
    ),
    (
        "require-team-label",
        spec(ISVC, ("metadata.labels", ...)),
        "metadata.labels.team is required: name the team that owns this object",
    ),
    # The ModelDeployment fields that name images, requests and storage.
    (
        "require-pinned-images",
        spec(
            MODEL,
            ("spec.model", ...),
            ("spec.resources", ...),
            ("spec.containers", [{**CUSTOM_LATEST, "resources": {"requests": {"cpu": "1"}}}]),
        ),
        "spec.containers[kserve-container].image ghcr.io/acme/custom:latest: the latest tag "
        "moves; pin a version or a digest",
    ),
    (
        "require-resource-requests",
        spec(
            MODEL,
            ("spec.model", ...),
            ("spec.resources", ...),
            ("spec.containers", [{"image": "c:1", "resources": {"requests": {"cpu": "1"}}}]),
        ),
        "spec.containers[kserve-container].resources.requests must set memory",
    ),
    (
        "require-resource-requests",
        spec(MODEL, ("spec.explainer", {"art": {"type": "SquareAttack"}})),
        "spec.explainer.art.resources.requests must set cpu and memory",
    ),
    (
        "allowed-storage-schemes",
        spec(
            MODEL,
            ("spec.model.storageUri", ...),
            ("spec.model.storageUris", [{"uri": "s3://a"}, {"uri": "oci://r/b:1"}]),
        ),
        "spec.model.storageUris oci://r/b:1 uses a storage scheme outside the allowlist "
        "(s3://, gs://, pvc://, hf://)",
    ),
    (
        "allowed-storage-schemes",
        spec(
            MODEL,
            ("spec.transformer", {"image": "t:1", "storageUris": [{"uri": "http://x/enc"}]}),
        ),
        "spec.transformer.storageUris http://x/enc uses a storage scheme outside the allowlist "
        "(s3://, gs://, pvc://, hf://)",
    ),
    # Overrides cannot slip past: what they change is judged in the rendered object.
    (
        "require-pinned-images",
        spec(
            MODEL,
            (
                "spec.overrides",
                [{"merge": {"spec": {"predictor": {"model": {"image": "srv:latest"}}}}}],
            ),
        ),
        "spec.predictor.model.image srv:latest: the latest tag moves; pin a version or a digest",
    ),
    (
        "allowed-storage-schemes",
        spec(
            MODEL,
            (
                "spec.overrides",
                [{"merge": {"spec": {"predictor": {"model": {"storageUri": "ftp://x/m"}}}}}],
            ),
        ),
        "spec.predictor.model.storageUri ftp://x/m uses a storage scheme outside the "
        "allowlist (s3://, gs://, pvc://, hf://)",
    ),
]


@pytest.mark.parametrize(
    ("name", "document", "expected"),
    SHIPPED_CASES,
    ids=[f"{name}-{index}" for index, (name, _, _) in enumerate(SHIPPED_CASES)],
)
def test_shipped_policy(
    library: PolicySet, name: str, document: dict[str, Any], expected: str | None
) -> None:
    result = verdict(library, name, document)
    assert result is not None, f"{name} did not apply"
    assert result.severity is PolicySeverity.DENY
    assert not result.error, result.message
    if expected is None:
        assert result.passed, result.message
    else:
        assert not result.passed
        assert result.denied
        assert result.message == expected


def test_a_policy_matches_by_the_kind_an_object_renders_to() -> None:
    """A platform team's policy for InferenceServices judges ModelDeployments too (they
    become one), and plain ones; not a TrainingRun, which renders to a job."""
    policies = compile_one(
        policy_yaml(
            '{expression: "rendered.spec.predictor.?minReplicas.orValue(1) >= 1", '
            "message: no scale to zero}",
            kinds="[InferenceService]",
        )
    )
    zero = spec(MODEL, ("spec.scaling", {"min": 0}))
    assert verdict(policies, "test-policy", MODEL) is not None
    denied = verdict(policies, "test-policy", zero)
    assert denied is not None
    assert denied.denied
    plain = verdict(policies, "test-policy", spec(ISVC, ("spec.predictor.minReplicas", 0)))
    assert plain is not None
    assert plain.denied
    assert verdict(policies, "test-policy", TRAINING) is None


def test_canary_steps_only_judge_canary_rollouts(library: PolicySet) -> None:
    assert verdict(library, "canary-steps", MODEL) is None
    direct = spec(MODEL, ("spec.rollout", {"strategy": "direct"}))
    assert verdict(library, "canary-steps", direct) is None


def test_fractional_gpus_are_an_error_not_a_pass(library: PolicySet) -> None:
    document = spec(TRAINING, (("spec", "resources", "limits", GPU), "500m"))
    result = verdict(library, "cap-training-gpus", document)
    assert result is not None
    assert not result.passed
    assert result.error
    assert "cannot convert value to integer" in result.message


def test_tenancy_fails_closed_on_the_namespace_gitsync_is_given(library: PolicySet) -> None:
    # The namespace comes from the caller (the default filled in), not from the spec.
    results = library.evaluate(
        kind="ModelDeployment",
        object=MODEL,
        rendered=None,
        old_object=None,
        namespace="ml-serving\x00ml-nlp",
    )
    (tenancy,) = [r for r in results if r.policy == "namespace-tenancy"]
    assert not tenancy.passed
    assert "ml-serving\ufffdml-nlp" in tenancy.message


# --- library folders -------------------------------------------------------------------


def test_extra_folder_overrides_a_shipped_policy_by_name(tmp_path: Path) -> None:
    shipped = (LIBRARY_DIR / "cap-training-gpus.yaml").read_text()
    (tmp_path / "gpus.yaml").write_text(shipped.replace("maxGpus: 8", "maxGpus: 16"))
    policies, diagnostics = load_library([tmp_path])
    assert [(d.severity, d.message) for d in diagnostics] == [
        (
            Severity.WARNING,
            f"policy 'cap-training-gpus' replaces the shipped one from "
            f"{LIBRARY_DIR / 'cap-training-gpus.yaml'}",
        )
    ]
    assert sorted(policies.names) == SHIPPED
    big = spec(TRAINING, ("spec.replicas.worker", 3), (("spec", "resources", "limits", GPU), "2"))
    result = verdict(policies, "cap-training-gpus", big)
    assert result is not None
    assert result.passed  # 10 GPUs, under the raised cap


def test_policy_folders(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(policy_yaml("expression: 'true'", name="first"))
    (tmp_path / "b.yml").write_bytes(policy_yaml("expression: 'true'", name="second"))
    (tmp_path / "notes.txt").write_text("not a policy")
    policies, diagnostics = load_policy_dirs([tmp_path])
    assert diagnostics == []
    assert policies.names == ("first", "second")
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_policy_dirs([tmp_path / "missing"])


def test_duplicate_policy_names_are_an_error() -> None:
    content = policy_yaml("expression: 'true'", name="twice")
    policies, diagnostics = load_policies([("a.yaml", content), ("b.yaml", content)])
    assert policies.names == ("twice",)
    assert [str(d) for d in diagnostics] == [
        "b.yaml:1:1: metadata.name: policy 'twice' is also declared at a.yaml:1"
    ]


# --- load errors -----------------------------------------------------------------------

LOAD_ERRORS = [
    pytest.param(
        b"apiVersion: gitsync.io/v1alpha1\nkind: Policy\nmetadata: {name: [x\n",
        ["policies/bad.yaml:4:1: invalid YAML: did not find expected ',' or ']'"],
        id="yaml-syntax",
    ),
    pytest.param(
        policy_yaml('expression: "object.spec.model +"'),
        [
            "policies/bad.yaml:7:39: spec.validations[0].expression: policy 'test-policy': "
            "Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', "
            "'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER} "
            "in 'object.spec.model +'"
        ],
        id="cel-syntax",
    ),
    pytest.param(
        policy_yaml("expression: \"size(object.spec) + 'x' == 2\""),
        [
            "policies/bad.yaml:7:38: spec.validations[0].expression: policy 'test-policy': "
            "found no matching overload for '_+_' applied to '(int, string)' "
            "in \"size(object.spec) + 'x' == 2\""
        ],
        id="cel-type",
    ),
    pytest.param(
        policy_yaml('expression: "size(object.spec)"'),
        [
            "policies/bad.yaml:7:20: spec.validations[0].expression: policy 'test-policy': "
            "must evaluate to bool, but evaluates to int in 'size(object.spec)'"
        ],
        id="validation-not-bool",
    ),
    pytest.param(
        policy_yaml('expression: "true"\nmessageExpression: "size(object.spec)"'),
        [
            "policies/bad.yaml:8:27: spec.validations[0].messageExpression: policy 'test-policy': "
            "must evaluate to string, but evaluates to int in 'size(object.spec)'"
        ],
        id="message-not-string",
    ),
    pytest.param(
        policy_yaml(
            "expression: \"variables.tem != ''\"",
            variables="variables:\n  - {name: team, expression: \"'x'\"}",
        ),
        [
            "policies/bad.yaml:9:29: spec.validations[0].expression: policy 'test-policy': "
            "unknown variable 'tem' (declared before this expression: team); did you mean "
            "'team'? in \"variables.tem != ''\""
        ],
        id="unknown-variable",
    ),
    pytest.param(
        policy_yaml(
            'expression: "variables.a"',
            variables=(
                "variables:\n"
                '  - {name: a, expression: "variables.b"}\n'
                '  - {name: b, expression: "true"}'
            ),
        ),
        [
            "policies/bad.yaml:7:39: spec.variables[0].expression: policy 'test-policy': "
            "unknown variable 'b' (declared before this expression: none) in 'variables.b'"
        ],
        id="variable-before-declaration",
    ),
    pytest.param(
        policy_yaml(
            'expression: "true"',
            variables='variables:\n  - {name: model, expression: "object.?spec.?model"}',
        ),
        [
            "policies/bad.yaml:7:34: spec.variables[0].expression: policy 'test-policy': a "
            "variable cannot hold an optional value; end it with .orValue(default) in "
            "'object.?spec.?model'"
        ],
        id="optional-variable",
    ),
    pytest.param(
        policy_yaml(
            'expression: "true"', variables='variables:\n  - {name: t, expression: "type(1)"}'
        ),
        [
            "policies/bad.yaml:7:30: spec.variables[0].expression: policy 'test-policy': a "
            "variable cannot hold a type value; compare types inside one expression in 'type(1)'"
        ],
        id="type-variable",
    ),
    pytest.param(
        policy_yaml('expression: "has(obj.spec)"'),
        [
            "policies/bad.yaml:7:23: spec.validations[0].expression: policy 'test-policy': "
            "unknown name 'obj'; expressions see object, oldObject, rendered, params, request "
            "and variables; did you mean 'object'? in 'has(obj.spec)'"
        ],
        id="unknown-name",
    ),
    pytest.param(
        policy_yaml("expression: \"quantity('1') < quantity('2')\""),
        [
            "policies/bad.yaml:7:34: spec.validations[0].expression: policy 'test-policy': "
            "found no matching overload for '_<_' applied to '(kubernetes.Quantity, "
            "kubernetes.Quantity)'; compare quantities with isLessThan(), isGreaterThan() or "
            "compareTo() in \"quantity('1') < quantity('2')\""
        ],
        id="quantity-operator",
    ),
    pytest.param(
        policy_yaml("expression: \"quantity('1') == '1'\""),
        [
            "policies/bad.yaml:7:34: spec.validations[0].expression: policy 'test-policy': "
            "found no matching overload for '_==_' applied to '(kubernetes.Quantity, string)' "
            "in \"quantity('1') == '1'\""
        ],
        id="quantity-is-not-a-string",
    ),
    pytest.param(
        policy_yaml("expression: \"'1'.isLessThan('2')\""),
        [
            "policies/bad.yaml:7:34: spec.validations[0].expression: policy 'test-policy': "
            "found no matching overload for 'isLessThan' applied to '(string, string)' "
            "in \"'1'.isLessThan('2')\""
        ],
        id="quantity-method-on-string",
    ),
    pytest.param(
        policy_yaml("expression: 'true'").replace(b"  validations:", b"  validation:"),
        [
            "policies/bad.yaml:6:3: spec.validation: policy 'test-policy': unknown field "
            "'validation'; did you mean 'validations'?"
        ],
        id="unknown-field",
    ),
    pytest.param(
        policy_yaml("expression: 'true'", extra="severity: block"),
        [
            "policies/bad.yaml:6:13: spec.severity: policy 'test-policy': 'block' is not one of "
            "'deny' or 'warn'"
        ],
        id="bad-severity",
    ),
    pytest.param(
        policy_yaml("expression: 'true'\nreason: Nope"),
        [
            "policies/bad.yaml:8:15: spec.validations[0].reason: policy 'test-policy': 'Nope' is "
            "not one of 'Unauthorized', 'Forbidden', 'Invalid' or 'RequestEntityTooLarge'"
        ],
        id="bad-reason",
    ),
    pytest.param(
        policy_yaml(
            "expression: 'true'",
            variables=(
                "variables:\n  - {name: x, expression: 'true'}\n  - {name: x, expression: 'false'}"
            ),
        ),
        ["policies/bad.yaml:5:3: spec: policy 'test-policy': variable 'x' is declared twice"],
        id="duplicate-variable",
    ),
    pytest.param(
        policy_yaml(
            "expression: 'true'", variables="variables:\n  - {name: namespace, expression: 'true'}"
        ),
        [
            "policies/bad.yaml:7:14: spec.variables[0].name: policy 'test-policy': 'namespace' "
            "is a reserved word in CEL"
        ],
        id="reserved-variable-name",
    ),
    pytest.param(
        policy_yaml("expression: 'true'").replace(
            b"match: {kinds: [ModelDeployment, TrainingRun]}",
            b"match: {kinds: [TrainingRun], labelSelector: {matchExpressions: [{key: team, "
            b"operator: In}]}}",
        ),
        [
            "policies/bad.yaml:5:68: spec.match.labelSelector.matchExpressions[0]: policy "
            "'test-policy': operator In needs at least one value"
        ],
        id="selector-without-values",
    ),
    pytest.param(
        policy_yaml("expression: 'true'").replace(b"kind: Policy", b"kind: Polcy"),
        [
            "policies/bad.yaml:2:7: kind: policy 'test-policy': 'Polcy' is not one of 'Policy'; "
            "did you mean 'Policy'?"
        ],
        id="wrong-kind",
    ),
    pytest.param(
        b"- just\n- a list\n",
        ["policies/bad.yaml:1:1: a policy document must be a mapping, not a list"],
        id="not-a-mapping",
    ),
]


@pytest.mark.parametrize(("content", "expected"), LOAD_ERRORS)
def test_broken_policies_are_rejected_at_load(content: bytes, expected: list[str]) -> None:
    assert load_errors(content) == expected


def test_every_broken_expression_of_a_policy_is_reported() -> None:
    content = policy_yaml(
        'expression: "object.a +"',
        'expression: "variables.nope"',
        'expression: "true"\nmessageExpression: "1"',
    )
    errors = load_errors(content)
    assert [e.split(": policy")[0] for e in errors] == [
        "policies/bad.yaml:7:30: spec.validations[0].expression",
        "policies/bad.yaml:8:29: spec.validations[1].expression",
        "policies/bad.yaml:10:27: spec.validations[2].messageExpression",
    ]


def test_a_broken_policy_does_not_take_its_neighbours_down() -> None:
    good = policy_yaml("expression: 'true'", name="good")
    bad = policy_yaml("expression: 'nope'", name="bad")
    policies, diagnostics = load_policies([("p.yaml", good + b"---\n" + bad)])
    assert policies.names == ("good",)
    assert [str(d) for d in diagnostics] == [
        "p.yaml:15:20: spec.validations[0].expression: policy 'bad': unknown name 'nope'; "
        "expressions see object, oldObject, rendered, params, request and variables in 'nope'"
    ]


@pytest.mark.parametrize(
    ("expression_yaml", "position"),
    [
        pytest.param('expression: "object.a + 1 +"', (7, 34), id="double-quoted"),
        pytest.param("expression: object.a + 1 +", (7, 33), id="plain"),
        pytest.param(
            "expression: |\n  object.a &&\n    object.b +", (9, 21), id="literal-block-line-2"
        ),
        pytest.param(
            "expression: >-\n  object.a &&\n  object.b +", (9, 19), id="folded-block-line-2"
        ),
        pytest.param(
            "expression: |-\n  object.a &&\n    object.b +", (9, 21), id="literal-block-strip"
        ),
        pytest.param(
            "expression: >\n  object.a\n  && object.b +\n", (9, 22), id="folded-trailing-newline"
        ),
    ],
)
def test_errors_point_into_the_expression(expression_yaml: str, position: tuple[int, int]) -> None:
    (error,) = load_errors(policy_yaml(expression_yaml))
    assert error.startswith(f"policies/bad.yaml:{position[0]}:{position[1]}: "), error
    assert "Syntax error" in error


# --- evaluation semantics --------------------------------------------------------------


def evaluate_one(
    content: bytes,
    document: dict[str, Any] | None = None,
    *,
    old: dict[str, Any] | None = None,
    namespace: str = DEFAULT_NAMESPACE,
) -> PolicyResult | None:
    document = document if document is not None else MODEL
    results = compile_one(content).evaluate(
        kind=document["kind"],
        object=document,
        rendered=rendered_for(document),
        old_object=old,
        namespace=namespace,
    )
    assert len(results) <= 1
    return results[0] if results else None


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        ("object.metadata.annotations['owner'] == 'x'", "no such key 'annotations'"),
        ("1 / 0 == 0", "divide by zero"),
        ("!(1 / 0 == 0)", "divide by zero"),
        ("object.spec.model.storageUri > 3", "No matching overloads"),
        ("object.spec.model.format", "evaluates to string, not bool"),
        ("quantity('200K').isInteger()", "'200K' has an unknown suffix 'K'"),
        ("int('9223372036854775807') + 1 > 0", "integer overflow"),
        ("[].min() == 0", "min() called on an empty list"),
    ],
)
def test_an_expression_that_errors_fails_never_passes(expression: str, detail: str) -> None:
    result = evaluate_one(policy_yaml(f'expression: "{expression}"\nmessage: "not this"'))
    assert result is not None
    assert not result.passed
    assert result.error
    assert result.denied
    (violation,) = result.violations
    assert violation.error
    assert violation.message.startswith(f"could not evaluate {expression!r}: ")
    assert detail in violation.message


def test_errors_absorbed_by_logic_follow_cel() -> None:
    # CEL's commutative || and && absorb an error when the other side decides.
    result = evaluate_one(policy_yaml('expression: "1 / 0 == 0 || true"'))
    assert result is not None
    assert result.passed
    result = evaluate_one(policy_yaml('expression: "1 / 0 == 0 && false"'))
    assert result is not None
    assert not result.passed
    assert not result.error


def test_variables_error_lazily_where_they_are_read() -> None:
    variables = """
    variables:
      - {name: owner, expression: "object.metadata.annotations['owner']"}
      - {name: upper, expression: "variables.owner.upperAscii()"}
      - {name: size, expression: "size(object.spec)"}
    """
    content = policy_yaml(
        "expression: \"!has(object.metadata.annotations) || variables.owner != ''\"",
        'expression: "variables.size == 2"',
        "expression: \"variables.upper == 'X'\"",
        variables=variables,
    )
    result = evaluate_one(content)
    assert result is not None
    assert [(v.expression, v.error, v.message) for v in result.violations] == [
        (
            "variables.upper == 'X'",
            True,
            "could not evaluate \"variables.upper == 'X'\": variable 'upper' could not be "
            "evaluated: variable 'owner' could not be evaluated: no such key 'annotations'",
        )
    ]


def test_variables_keep_their_checked_types() -> None:
    variables = """
    variables:
      - {name: memory, expression: "quantity(object.spec.resources.requests.memory)"}
      - {name: replicas, expression: "[1, 2, 3]"}
    """
    content = policy_yaml(
        "expression: \"variables.memory.isLessThan(quantity('2Gi'))\"",
        'expression: "variables.replicas.sum() == 6"',
        variables=variables,
    )
    result = evaluate_one(content)
    assert result is not None
    assert result.passed, result.message
    # ...so misuse is caught at load, not at run time.
    errors = load_errors(policy_yaml('expression: "variables.memory > 1"', variables=variables))
    assert (
        "found no matching overload for '_>_' applied to '(kubernetes.Quantity, int)'"
        in (errors[0])
    )


@pytest.mark.parametrize(
    ("validation", "expected"),
    [
        pytest.param(
            "expression: 'false'\n"
            "messageExpression: \"'model ' + object.metadata.name + ' is ' + object.kind\"\n"
            "message: static",
            "model fraud is ModelDeployment",
            id="message-expression",
        ),
        pytest.param(
            "expression: 'false'\nmessageExpression: \"object.nope\"\nmessage: static fallback",
            "static fallback",
            id="erroring-message-expression-falls-back",
        ),
        pytest.param(
            "expression: 'false'\nmessageExpression: \"' '\"\nmessage: blank falls back",
            "blank falls back",
            id="blank-message-expression-falls-back",
        ),
        pytest.param(
            "expression: 'false'\nmessageExpression: \"'two\\\\nlines'\"\nmessage: one line",
            "one line",
            id="multi-line-message-expression-falls-back",
        ),
        pytest.param(
            'expression: "size(object.spec) == 0"',
            "failed expression: size(object.spec) == 0",
            id="default-message",
        ),
    ],
)
def test_failure_messages(validation: str, expected: str) -> None:
    result = evaluate_one(policy_yaml(validation))
    assert result is not None
    assert not result.error
    assert result.message == expected


def test_reason_severity_and_all_failures_are_reported() -> None:
    content = policy_yaml(
        "expression: 'false'\nmessage: first\nreason: Forbidden",
        "expression: 'true'\nmessage: never",
        "expression: 'false'\nmessage: third",
        extra="severity: warn",
    )
    result = evaluate_one(content)
    assert result is not None
    assert result.severity is PolicySeverity.WARN
    assert not result.passed
    assert not result.denied  # a warning never blocks
    assert result.reason == "Forbidden"
    assert result.message == "first; third"
    assert [v.reason for v in result.violations] == ["Forbidden", "Invalid"]
    assert str(result) == "test-policy (warn): first; third"


FRAMEWORK_IS_IMMUTABLE = policy_yaml(
    'expression: "oldObject == null || object.spec.framework == oldObject.spec.framework"\n'
    "messageExpression: \"'spec.framework cannot change from ' + oldObject.spec.framework"
    " + ' to ' + object.spec.framework + ' (' + request.operation + ')'\"",
    kinds="[TrainingRun]",
)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(None, TRAINING, None, id="created"),
        pytest.param(TRAINING, spec(TRAINING, ("spec.image", "x:2")), None, id="unchanged"),
        pytest.param(
            TRAINING,
            spec(TRAINING, ("spec.framework", "pytorch"), ("spec.replicas", {"worker": 2})),
            "spec.framework cannot change from tensorflow to pytorch (UPDATE)",
            id="changed",
        ),
    ],
)
def test_transition_rules_see_the_old_object(
    old: dict[str, Any] | None, new: dict[str, Any], expected: str | None
) -> None:
    result = evaluate_one(FRAMEWORK_IS_IMMUTABLE, new, old=old)
    assert result is not None
    assert not result.error
    assert result.passed is (expected is None)
    assert result.message == (expected or "")


def test_rendered_is_the_kubernetes_object() -> None:
    content = policy_yaml(
        "expression: \"rendered.kind == 'InferenceService' && "
        "rendered.spec.predictor.model.storageUri == object.spec.model.storageUri && "
        'rendered.metadata.namespace == request.namespace"',
        kinds="[ModelDeployment]",
    )
    result = evaluate_one(content)
    assert result is not None
    assert result.passed, result.message


def test_params_are_visible() -> None:
    content = policy_yaml(
        'expression: "object.spec.model.format in params.formats"',
        extra="params: {formats: [sklearn, xgboost]}",
    )
    passed = evaluate_one(content)
    assert passed is not None
    assert passed.passed
    onnx = evaluate_one(content, spec(MODEL, ("spec.model.format", "onnx")))
    assert onnx is not None
    assert not onnx.passed


def test_match_conditions() -> None:
    content = policy_yaml(
        "expression: 'false'\nmessage: applied",
        extra="matchConditions:\n  - {name: gpu, expression: \"'nvidia.com/gpu' in "
        'object.spec.resources.requests"}',
    )
    assert evaluate_one(content) is None  # condition false: the policy does not apply
    gpu = spec(MODEL, (("spec", "resources", "requests", GPU), "1"))
    applied = evaluate_one(content, gpu)
    assert applied is not None
    assert applied.message == "applied"
    broken = evaluate_one(content, spec(MODEL, ("spec.resources", ...)))
    assert broken is not None  # an erroring condition fails closed
    assert not broken.passed
    assert broken.error
    assert broken.message == "match condition 'gpu' could not be evaluated: no such key 'resources'"


SELECTOR_POLICY = """
apiVersion: gitsync.io/v1alpha1
kind: Policy
metadata: {name: selector}
spec:
  match:
    kinds: [ModelDeployment]
    namespaces: [ml-serving, ml-nlp]
    labelSelector:
      matchLabels: {tier: prod}
      matchExpressions:
        - {key: team, operator: In, values: [risk, growth]}
        - {key: stage, operator: NotIn, values: [canary]}
        - {key: owner, operator: Exists}
        - {key: legacy, operator: DoesNotExist}
  validations: [{expression: 'true'}]
"""
PROD = {"tier": "prod", "team": "risk", "owner": "ana"}


@pytest.mark.parametrize(
    ("kind", "namespace", "labels", "selected"),
    [
        ("ModelDeployment", "ml-serving", PROD, True),
        ("ModelDeployment", "ml-nlp", {**PROD, "stage": "ga"}, True),
        ("TrainingRun", "ml-serving", PROD, False),
        ("ModelDeployment", "default", PROD, False),
        ("ModelDeployment", "ml-serving", {**PROD, "tier": "dev"}, False),
        ("ModelDeployment", "ml-serving", {**PROD, "team": "ads"}, False),
        ("ModelDeployment", "ml-serving", {**PROD, "stage": "canary"}, False),
        ("ModelDeployment", "ml-serving", {"tier": "prod", "team": "risk"}, False),
        ("ModelDeployment", "ml-serving", {**PROD, "legacy": "yes"}, False),
    ],
)
def test_match_selects_like_kubernetes(
    kind: str, namespace: str, labels: dict[str, str], selected: bool
) -> None:
    (policy,) = compile_one(SELECTOR_POLICY.encode())
    assert policy.matches(kind=kind, namespace=namespace, labels=labels) is selected
    results = PolicySet((policy,)).evaluate(
        kind=kind,
        object={"metadata": {"name": "x", "labels": labels}},
        rendered=None,
        old_object=None,
        namespace=namespace,
    )
    assert len(results) == int(selected)


def test_kind_wildcard_matches_plain_manifests() -> None:
    content = policy_yaml(
        "expression: \"has(object.metadata.labels) && 'team' in object.metadata.labels\"",
        kinds="['*']",
    )
    policies = compile_one(content)
    service_account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}}
    (result,) = policies.evaluate(
        kind="ServiceAccount",
        object=service_account,
        rendered=service_account,
        old_object=None,
        namespace="ml-serving",
    )
    assert not result.passed


def test_yaml_values_reach_cel_as_json_would() -> None:
    # Unquoted YAML dates load as datetime.date; Kubernetes would see strings.
    document = yaml.safe_load(
        "kind: TrainingRun\nmetadata: {name: x, annotations: {since: 2026-11-01}}\n"
        "spec: {framework: pytorch, image: x:1}\n"
    )
    document["spec"]["args"] = ("--epochs", "3")
    content = policy_yaml(
        "expression: \"object.metadata.annotations.since == '2026-11-01'\"",
        "expression: \"object.spec.args == ['--epochs', '3']\"",
        kinds="[TrainingRun]",
    )
    result = evaluate_one(content, document)
    assert result is not None
    assert result.passed, result.message


def test_inputs_are_not_modified() -> None:
    document = copy.deepcopy(TRAINING)
    compile_one(policy_yaml("expression: 'true'")).evaluate(
        kind="TrainingRun", object=document, rendered=None, old_object=None, namespace="x"
    )
    assert document == TRAINING


# --- quantities in CEL (the type itself: tests/test_quantity.py) ------------------


CEL_QUANTITY_TRUTHS = [
    "quantity('1Gi').isGreaterThan(quantity('1000Mi'))",
    "quantity('500m').isLessThan(quantity('1'))",
    "!quantity('1').isLessThan(quantity('1000m'))",
    "quantity('1') == quantity('1000m')",
    "quantity('200M').compareTo(quantity('0.2G')) == 0",
    "quantity('50M').compareTo(quantity('50Mi')) == -1",
    "quantity('50Mi').compareTo(quantity('50M')) == 1",
    "quantity('50k').asInteger() == 50000",
    "quantity('1.5').asApproximateFloat() == 1.5",
    "quantity('50000000G').isInteger()",
    "!quantity('9999999999999999999999999999999999999G').isInteger()",
    "quantity('50k').add(quantity('20k')) == quantity('70k')",
    "quantity('50k').add(20) == quantity('50020')",
    "quantity('50k').sub(quantity('20k')) == quantity('30k')",
    "quantity('50k').sub(20000) == quantity('30k')",
    "quantity('50k').add(20).sub(quantity('100k')).sub(-50000) == quantity('20')",
    "quantity('2Gi').mul(3) == quantity('6Gi')",
    "quantity('-1').sign() == -1 && sign(quantity('0')) == 0 && quantity('1m').sign() == 1",
    "isQuantity('1.3Gi') && isQuantity('10000k') && !isQuantity('200K') && !isQuantity('10Mo')",
    "quantity('50k').add(quantity('20')) == quantity('50.02k')",
    "quantity('50k').sub(quantity('20')) == quantity('49.98k')",
    "quantity('50.703k').asApproximateFloat() == 50703.0",
    "[1, 2, 3].sum() == 6 && [1.5, 2.5].sum() == 4.0",
    "[3, 1, 2].min() == 1 && ['b', 'a'].max() == 'b'",
    "[1, 2, 2].isSorted() && ![2, 1].isSorted() && [].isSorted()",
]


@pytest.mark.parametrize("expression", CEL_QUANTITY_TRUTHS)
def test_kubernetes_cel_library(expression: str) -> None:
    result = evaluate_one(policy_yaml(f'expression: "{expression}"'))
    assert result is not None
    assert result.passed, result.message


def test_a_string_cannot_pose_as_a_quantity() -> None:
    # dyn() defeats the type checker; the runtime still refuses a forged quantity.
    content = policy_yaml(
        "expression: \"dyn(object.metadata.name).isLessThan(quantity('1'))\"",
        kinds="[TrainingRun]",
    )
    for name in ("1", "kubernetes.Quantity:0"):
        result = evaluate_one(content, spec(TRAINING, ("metadata.name", name)))
        assert result is not None
        assert result.error
        assert "not a quantity" in result.message


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        (
            "quantity('9999999999999999999999999999999999999G').asInteger() > 0",
            "cannot convert value to integer",
        ),
        ("quantity('1Mi').add(quantity('x')).sign() == 1", "'x' is not a quantity"),
        ("[1, 2.0].map(x, x).sum() > 0", "sum() needs a list of ints or of doubles"),
    ],
)
def test_kubernetes_cel_library_errors(expression: str, detail: str) -> None:
    result = evaluate_one(policy_yaml(f'expression: "{expression}"'))
    assert result is not None
    assert not result.passed
    assert result.error
    assert detail in result.message


def test_enforce_re_judges_only_what_changed(library: PolicySet) -> None:
    config, loaded = load_examples()
    context = examples_context(config, loaded, instance="memo")
    pairs = [(entry, render(entry, context)) for entry in loaded.entries]
    memo: VerdictMemo = {}
    namespace = config.defaults.namespace

    first = enforce(library, pairs, default_namespace=namespace, memo=memo)
    again = enforce(library, pairs, default_namespace=namespace, memo=memo)
    changed = [(pairs[0][0], dict(pairs[0][1])), *pairs[1:]]  # an equal but new rendering
    third = enforce(library, changed, default_namespace=namespace, memo=memo)

    def results_of(verdicts: object, entry: object) -> list[object]:
        return [r for e, r in verdicts.results if e is entry]  # type: ignore[attr-defined]

    entry = pairs[0][0]
    assert all(
        a is b for a, b in zip(results_of(first, entry), results_of(again, entry), strict=True)
    )
    assert not any(
        a is b for a, b in zip(results_of(again, entry), results_of(third, entry), strict=True)
    )
    assert [r.passed for r in results_of(third, entry)] == [
        r.passed for r in results_of(first, entry)
    ]
