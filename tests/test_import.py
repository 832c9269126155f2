"""``gitsync import``: the imported spec renders back to the original object exactly
(apart from gitsync's stamps), and the API server accepts what it renders."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gitsync.clients.kube import KubeClient
from gitsync.importing import Imported, Refused, import_object, import_text, without_stamps
from gitsync.loading import load_file
from gitsync.render import LABEL_TRAINING_RUN, RenderContext, render

from .test_cli import gitsync


def isvc(name: str, predictor: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "ml", **metadata},
        "spec": {"predictor": predictor},
    }


def model(fmt: str, uri: str, **fields: Any) -> dict[str, Any]:
    return {"model": {"modelFormat": {"name": fmt}, "storageUri": uri, **fields}}


#: From KServe's documented examples (docs/modelserving/v1beta1/*), written in the
#: new schema (predictor.model), each one typed by gitsync in full.
TYPED = [
    isvc("sklearn-iris", model("sklearn", "gs://kfserving-examples/models/sklearn/1.0/model")),
    isvc(
        "xgboost-iris",
        {
            **model(
                "xgboost", "gs://kfserving-examples/models/xgboost/iris", runtime="kserve-xgbserver"
            ),
            "minReplicas": 1,
            "maxReplicas": 3,
        },
    ),
    isvc(
        "torchserve",
        {
            **model(
                "pytorch",
                "gs://kfserving-examples/models/torchserve/image_classifier/v1",
                runtimeVersion="0.9.0",
                resources={"limits": {"cpu": "1", "memory": "4Gi", "nvidia.com/gpu": "1"}},
            ),
            "serviceAccountName": "model-reader",
        },
        labels={"team": "vision"},
        annotations={"serving.kserve.io/enable-prometheus-scraping": "true"},
    ),
    isvc("lgbm", model("lightgbm", "s3://models/lightgbm/iris"), labels={"team": "risk"}),
]


def roundtrip(document: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    # Unsorted, as `gitsync import` writes it: the order of env entries is meaningful.
    text = yaml.safe_dump(document, sort_keys=False).encode()
    loaded = load_file("imported.yaml", text)
    assert not loaded.diagnostics, loaded.diagnostics
    (entry,) = loaded.entries
    return without_stamps(render(entry, RenderContext(instance="t", default_namespace=namespace)))


@pytest.mark.parametrize("original", TYPED, ids=lambda o: o["metadata"]["name"])
def test_typed_inference_services_round_trip(original: dict[str, Any]) -> None:
    result = import_object(original, source="in.yaml")
    assert isinstance(result, Imported)
    assert result.document["kind"] == "ModelDeployment"
    assert "overrides" not in result.document["spec"]
    assert roundtrip(result.document) == original


def test_what_the_server_wrote_is_left_out() -> None:
    live = copy.deepcopy(TYPED[0])
    live["metadata"] |= {
        "uid": "0d9c",
        "resourceVersion": "42",
        "generation": 3,
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [{"manager": "kubectl"}],
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        "labels": {"app.kubernetes.io/managed-by": "gitsync", "gitsync.io/instance": "prod"},
    }
    live["status"] = {"url": "http://sklearn-iris.ml.example.com"}
    result = import_object(live, source="live.yaml")
    assert isinstance(result, Imported)
    assert result.document["metadata"] == {"name": "sklearn-iris", "namespace": "ml"}
    assert roundtrip(result.document) == TYPED[0]


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        pytest.param(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "cfg-"}},
            "named by generateName",
            id="generate-name",
        ),
        pytest.param(
            {"kind": "ConfigMap", "metadata": {"name": "x"}}, "no apiVersion", id="no-api"
        ),
        pytest.param({"apiVersion": "v1", "kind": "ConfigMap"}, "no metadata", id="no-metadata"),
        pytest.param(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}},
            "no metadata.name",
            id="no-name",
        ),
    ],
)
def test_what_gitops_cannot_own_is_refused(document: dict[str, Any], reason: str) -> None:
    result = import_object(document, source="in.yaml")
    assert isinstance(result, Refused)
    assert reason in result.reason


def test_other_kinds_are_kept_as_they_are() -> None:
    service_account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "model-reader", "namespace": "ml", "uid": "1"},
    }
    result = import_object(service_account, source="in.yaml")
    assert isinstance(result, Imported)
    assert result.document == {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "model-reader", "namespace": "ml"},
    }


def test_a_list_and_several_documents_are_all_imported() -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": TYPED[:2]}
    text = yaml.safe_dump_all([listed, TYPED[2], "not an object"]).encode()
    results = import_text("all.yaml", text)
    assert [type(r).__name__ for r in results] == ["Imported", "Imported", "Imported", "Refused"]
    assert [r.source for r in results] == ["all.yaml#0", "all.yaml#0", "all.yaml#1", "all.yaml#2"]
    assert isinstance(import_text("bad.yaml", b"a: [")[0], Refused)


def test_an_object_without_namespace_is_imported_for_the_default_one() -> None:
    original = copy.deepcopy(TYPED[0])
    del original["metadata"]["namespace"]
    result = import_object(original, source="in.yaml", default_namespace="ml")
    assert isinstance(result, Imported)
    assert "namespace" not in result.document["metadata"]
    assert roundtrip(result.document, namespace="ml") == TYPED[0]


def test_the_command_prints_specs_and_writes_files(tmp_path: Path) -> None:
    manifests = tmp_path / "isvcs.yaml"
    manifests.write_text(yaml.safe_dump_all([*TYPED[:2], {"kind": "Broken"}]))

    printed = gitsync("import", str(manifests))
    assert printed.returncode == 1, printed.stderr
    assert "isvcs.yaml#2: refused: not a Kubernetes object" in printed.stderr
    documents = list(yaml.safe_load_all(printed.stdout))
    assert [d["metadata"]["name"] for d in documents] == ["sklearn-iris", "xgboost-iris"]
    assert "# predictor.model: format, storageUri\n" in printed.stdout

    out = tmp_path / "specs"
    written = gitsync("import", str(manifests), "--out", str(out))
    assert written.returncode == 1
    target = out / "ml" / "sklearn-iris.yaml"
    assert roundtrip(yaml.safe_load(target.read_text())) == TYPED[0]
    again = gitsync("import", str(manifests), "--out", str(out))
    assert f"refused: {target} exists (never overwritten)" in again.stderr
    # The specs load; what validate still says is what the shipped policies ask of
    # these models (the originals set no requests and name no team).
    validated = gitsync("validate", str(out))
    errors = [line for line in validated.stdout.splitlines() if line]
    assert errors, validated.stderr
    assert all("denied by policy" in line for line in errors), errors


CORPUS = [
    d
    for d in yaml.safe_load_all(
        (Path(__file__).parent / "data" / "inferenceservices.yaml").read_text()
    )
    if d
]


def _in(namespace: str, original: dict[str, Any]) -> dict[str, Any]:
    moved = copy.deepcopy(original)
    moved["metadata"]["namespace"] = namespace
    return moved


def test_the_corpus_is_what_kserve_accepts(kube: KubeClient, namespace: str) -> None:
    assert len(CORPUS) >= 20
    for original in CORPUS:
        stored = kube.apply(_in(namespace, original), field_manager="corpus", dry_run=True)
        assert stored["spec"]["predictor"], original["metadata"]["name"]


#: Imported as a ModelDeployment with every field typed (no overrides): all but the
#: ones named here.
KEPT = {"canary-sklearn": "may not change '/spec/predictor/canaryTrafficPercent'"}


@pytest.mark.parametrize("original", CORPUS, ids=lambda o: o["metadata"]["name"])
def test_every_corpus_service_renders_back_exactly(original: dict[str, Any]) -> None:
    result = import_object(original, source="corpus.yaml")
    assert isinstance(result, Imported)
    name = original["metadata"]["name"]
    if name in KEPT:
        # Mid-canary: the traffic split is the rollout's to set, so the object is kept
        # as a plain manifest (which gitsync applies as it is) and the note says why.
        assert result.document == original
        assert KEPT[name] in result.notes[0]
        return
    assert result.document["kind"] == "ModelDeployment"
    assert "overrides" not in result.document["spec"], result.notes
    assert roundtrip(result.document) == original


def test_what_gitsync_does_not_type_goes_to_one_json_patch() -> None:
    original = copy.deepcopy(next(d for d in CORPUS if d["metadata"]["name"] == "sklearn-raw-hpa"))
    predictor = original["spec"]["predictor"]
    predictor |= {"hostNetwork": True, "scaleMetric": "gpu-duty"}
    predictor["model"]["imagePullPolicy"] = "Always"
    result = import_object(original, source="in.yaml")
    assert isinstance(result, Imported)
    assert result.document["kind"] == "ModelDeployment"
    (override,) = result.document["spec"]["overrides"]
    assert sorted(op["path"] for op in override["jsonPatch"]) == [
        "/spec/predictor/hostNetwork",
        "/spec/predictor/model/imagePullPolicy",
        "/spec/predictor/scaleMetric",
    ]
    # A value the typed field refuses is left to the patch, and the note says why.
    assert any("left to overrides: spec.scaling.metric" in note for note in result.notes)
    assert result.document["spec"]["scaling"]["target"] == 70
    assert roundtrip(result.document) == original


def test_what_every_corpus_import_renders_passes_a_server_side_dry_run(
    kube: KubeClient, namespace: str
) -> None:
    for original in CORPUS:
        result = import_object(_in(namespace, original), source="corpus.yaml")
        assert isinstance(result, Imported)
        body = (
            roundtrip(result.document)
            if result.document["kind"] == "ModelDeployment"
            else result.document
        )
        stored = kube.apply(body, field_manager="gitsync-import", dry_run=True)
        assert (
            stored["spec"]
            == kube.apply(_in(namespace, original), field_manager="corpus", dry_run=True)["spec"]
        ), original["metadata"]["name"]


# --- the contract as a property: any InferenceService renders back from its import ----

_URIS = st.sampled_from(
    [
        "s3://models/a",
        "gs://bucket/m/1",
        "pvc://claim/model.joblib",
        "hf://org/model",
        "oci://registry.example.com/m:1",
        "https://example.com/m.tar.gz",
        "ftp://not/a/kserve/scheme",  # refused by the typed field: the patch carries it
    ]
)
_ENV = st.lists(
    st.one_of(
        st.builds(
            lambda n, v: {"name": n, "value": v},
            st.sampled_from(["A", "B", "C"]),
            st.text(max_size=5),
        ),
        st.builds(
            lambda n: {"name": n, "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            st.sampled_from(["TOKEN", "KEY"]),
        ),
    ),
    max_size=3,
    unique_by=lambda e: e["name"],
)
_MODEL = st.fixed_dictionaries(
    {
        "modelFormat": st.fixed_dictionaries(
            {
                "name": st.sampled_from(
                    ["sklearn", "xgboost", "onnx", "pytorch", "huggingface", "mystery"]
                )
            },
            optional={"version": st.sampled_from(["1", "2.1"])},
        ),
        "storageUri": _URIS,
    },
    optional={
        "protocolVersion": st.sampled_from(["v1", "v2", "grpc-v2"]),
        "runtime": st.sampled_from(["kserve-sklearnserver", "custom-runtime"]),
        "runtimeVersion": st.sampled_from(["1.3.0", "latest"]),
        "args": st.lists(st.sampled_from(["--a", "--b=1"]), max_size=2),
        "env": _ENV,
        "imagePullPolicy": st.sampled_from(["Always", "IfNotPresent"]),
        "resources": st.fixed_dictionaries(
            {},
            optional={
                "requests": st.just({"cpu": "100m", "memory": "1Gi"}),
                "limits": st.just({"cpu": "1"}),
            },
        ),
    },
)
_PREDICTOR = st.fixed_dictionaries(
    {"model": _MODEL},
    optional={
        "minReplicas": st.integers(0, 3),
        "maxReplicas": st.integers(1, 9),
        "scaleMetric": st.sampled_from(["cpu", "concurrency", "gpu-duty"]),
        "scaleTarget": st.integers(1, 100),
        "containerConcurrency": st.integers(0, 10),
        "timeout": st.integers(1, 300),
        "serviceAccountName": st.just("model-reader"),
        "nodeSelector": st.just({"pool": "gpu"}),
        "tolerations": st.just([{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]),
        "priorityClassName": st.just("high"),
        "labels": st.just({"app": "x"}),
        "annotations": st.just({"sidecar.istio.io/inject": "false"}),
        "hostNetwork": st.booleans(),  # not typed: the patch carries it
        "dnsPolicy": st.sampled_from(["ClusterFirst", "Default"]),
        "terminationGracePeriodSeconds": st.integers(0, 60),
        "logger": st.just({"mode": "all", "url": "http://logger.svc"}),
        "batcher": st.just({"maxBatchSize": 8}),
    },
)
_SERVICES = st.builds(
    lambda predictor, labels, mode: {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "generated",
            "namespace": "ml",
            **({"labels": labels} if labels else {}),
            **({"annotations": {"serving.kserve.io/deploymentMode": mode}} if mode else {}),
        },
        "spec": {"predictor": predictor},
    },
    _PREDICTOR,
    st.sampled_from([{}, {"team": "risk"}]),
    st.sampled_from([None, "Serverless", "Standard", "RawDeployment"]),
)


@settings(max_examples=150, deadline=None)
@given(original=_SERVICES)
def test_any_inference_service_renders_back_from_its_import(original: dict[str, Any]) -> None:
    result = import_object(original, source="generated.yaml")
    assert isinstance(result, Imported)
    if result.document["kind"] == "ModelDeployment":
        assert roundtrip(result.document) == original
    else:
        # Kept as it is: the object itself, which gitsync applies unchanged.
        assert result.document == original, result.notes


# --- training jobs ----------------------------------------------------------------------

JOBS = [
    d
    for d in yaml.safe_load_all((Path(__file__).parent / "data" / "trainingjobs.yaml").read_text())
    if d
]


def rendered_run(document: dict[str, Any], *, name: str) -> dict[str, Any]:
    """What an imported TrainingRun renders to, under the original job's name (a run's
    name adds its spec's hash) and without the TrainingRun label gitsync stamps."""
    body = roundtrip(document)
    body["metadata"]["name"] = name
    labels = {
        k: v for k, v in body["metadata"].get("labels", {}).items() if k != LABEL_TRAINING_RUN
    }
    if labels:
        body["metadata"]["labels"] = labels
    else:
        body["metadata"].pop("labels", None)
    return body


@pytest.mark.parametrize("original", JOBS, ids=lambda o: o["metadata"]["name"])
def test_every_training_job_renders_back_exactly(original: dict[str, Any]) -> None:
    result = import_object(original, source="jobs.yaml")
    assert isinstance(result, Imported)
    assert result.document["kind"] == "TrainingRun", result.notes
    assert "overrides" not in result.document["spec"], result.notes
    assert rendered_run(result.document, name=original["metadata"]["name"]) == original


def test_roles_share_what_they_have_alike_and_say_what_they_do_apart() -> None:
    original = next(j for j in JOBS if j["metadata"]["name"] == "estimator-with-eval")
    result = import_object(original, source="jobs.yaml")
    assert isinstance(result, Imported)
    spec = result.document["spec"]
    assert spec["image"] == "ghcr.io/acme/estimator:2.15"
    assert spec["replicas"] == {"chief": 1, "worker": 2, "evaluator": 1}
    # Only the chief mounts the checkpoints: the volume is its own, not everyone's.
    assert "volumes" not in spec
    assert spec["roles"]["chief"]["volumes"][0]["name"] == "checkpoints"
    assert "volumes" not in spec["roles"]["worker"]
    assert "overrides" not in spec


def test_what_every_training_import_renders_passes_a_server_side_dry_run(
    kube: KubeClient, namespace: str
) -> None:
    for original in JOBS:
        moved = _in(namespace, original)
        result = import_object(moved, source="jobs.yaml")
        assert isinstance(result, Imported)
        body = rendered_run(result.document, name=moved["metadata"]["name"])
        stored = kube.apply(body, field_manager="gitsync-import", dry_run=True)
        assert stored["spec"] == kube.apply(moved, field_manager="corpus", dry_run=True)["spec"], (
            original["metadata"]["name"]
        )


#: Fields inside typed ones that gitsync does not type itself: each one goes to the
#: overrides, and the import still renders back to the whole original.
NESTED_UNTYPED = [
    {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "claims", "namespace": "ml", "labels": {"team": "nlp"}},
        "spec": {
            "runtimeRef": {"name": "torch-distributed"},
            "trainer": {
                "image": "ghcr.io/acme/finetune:1.0",
                "resourcesPerNode": {
                    "limits": {"nvidia.com/gpu": "1"},
                    "claims": [{"name": "gpu"}],
                },
            },
        },
    },
    {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "file-key", "namespace": "ml", "labels": {"team": "nlp"}},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {
                    "replicas": 1,
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "pytorch",
                                    "image": "ghcr.io/acme/ddp:1.0",
                                    "env": [
                                        {
                                            "name": "TOKEN",
                                            "valueFrom": {
                                                "fileKeyRef": {
                                                    "path": "token.env",
                                                    "key": "TOKEN",
                                                    "volumeName": "config",
                                                }
                                            },
                                        }
                                    ],
                                }
                            ]
                        }
                    },
                }
            }
        },
    },
]


@pytest.mark.parametrize("original", NESTED_UNTYPED, ids=lambda o: o["metadata"]["name"])
def test_a_field_left_to_the_overrides_inside_a_typed_one_is_kept(
    original: dict[str, Any],
) -> None:
    given = copy.deepcopy(original)
    result = import_object(original, source="job.yaml")
    assert isinstance(result, Imported)
    assert original == given, "the import changed its input"
    assert result.document["kind"] == "TrainingRun", result.notes
    assert "overrides" in result.document["spec"], result.notes
    assert rendered_run(result.document, name=original["metadata"]["name"]) == original
