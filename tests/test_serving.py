"""ModelDeployment's KServe v0.20 surface: one golden rendering per field group (the
specs in tests/serving_cases), each accepted by the real API server with the full
InferenceService CRD; a mistake in each new field explained at its line; overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsync.clients.kube import KubeClient
from gitsync.diff import holds
from gitsync.evaluation import Evaluator
from gitsync.loading import Entry, load_file, load_tree
from gitsync.policy import PolicySet
from gitsync.render import RenderContext, render

CASES = Path(__file__).parent / "serving_cases"
GOLDEN = Path(__file__).parent / "golden" / "serving"
CONTEXT = RenderContext(instance="cases", default_namespace="cases")


def _entry(path: str, content: bytes) -> Entry:
    result = load_file(path, content)
    assert not result.diagnostics, [str(d) for d in result.diagnostics]
    (entry,) = result.entries
    return entry


def _rendered_cases() -> dict[str, dict[str, Any]]:
    return {
        case.stem: render(_entry(case.name, case.read_bytes()), CONTEXT)
        for case in sorted(CASES.glob("*.yaml"))
    }


def test_cases_match_golden_files() -> None:
    rendered = _rendered_cases()
    if os.environ.get("GITSYNC_UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for old in GOLDEN.glob("*.yaml"):
            old.unlink()
        for name, obj in rendered.items():
            (GOLDEN / f"{name}.yaml").write_text(yaml.safe_dump(obj, sort_keys=False))
    expected = {path.stem: yaml.safe_load(path.read_text()) for path in GOLDEN.glob("*.yaml")}
    assert sorted(rendered) == sorted(expected)
    for name, obj in rendered.items():
        assert obj == expected[name], f"{name} differs from its golden file"


def test_every_case_is_accepted_by_the_real_api_server(kube: KubeClient) -> None:
    """Server-side dry-run against the full KServe v0.20 InferenceService schema."""
    kube.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cases"}},
        field_manager="test",
    )
    for name, obj in _rendered_cases().items():
        accepted = kube.apply(obj, field_manager="gitsync", force=True, dry_run=True)
        assert holds(accepted, obj), f"the server dropped or changed fields of {name}"


MODEL = """\
apiVersion: gitsync.io/v1alpha1
kind: ModelDeployment
metadata: {name: m, namespace: ml}
spec:
  model: {format: sklearn, storageUri: s3://models/m/v1}
"""


def _spec(extra: str = "", *, model: str | None = None) -> bytes:
    default = "{format: sklearn, storageUri: s3://models/m/v1}"
    text = MODEL if model is None else MODEL.replace(default, model)
    return (text + extra).encode()


def _predictor(content: bytes) -> dict[str, Any]:
    predictor: dict[str, Any] = render(_entry("m.yaml", content), CONTEXT)["spec"]["predictor"]
    return predictor


def test_replicas_are_rendered_only_when_written() -> None:
    """Left out, KServe decides: one replica at least and, in Serverless mode, no
    upper bound (a rendered default would cap every model at one)."""
    assert "minReplicas" not in _predictor(_spec())
    assert "maxReplicas" not in _predictor(_spec())
    only_min = _predictor(_spec("  scaling: {min: 0}\n"))
    assert only_min["minReplicas"] == 0
    assert "maxReplicas" not in only_min
    legacy = _predictor(_spec("  replicas: {max: 4}\n"))
    assert legacy["maxReplicas"] == 4
    assert "minReplicas" not in legacy


@pytest.mark.parametrize(
    ("model", "protocol"),
    [
        ("{format: onnx, storageUri: s3://m}", "v2"),
        ("{format: triton, storageUri: s3://m}", "v2"),
        ("{format: mlflow, storageUri: s3://m}", "v2"),
        ("{format: onnx, storageUri: s3://m, protocolVersion: v1, runtime: my-onnx}", "v1"),
        ("{format: sklearn, storageUri: s3://m}", None),
        ("{format: tensorflow, storageUri: s3://m, protocolVersion: grpc-v1}", "grpc-v1"),
    ],
)
def test_protocol_version(model: str, protocol: str | None) -> None:
    """Formats no shipped v1 runtime serves get v2; a written protocol always wins;
    anything else is KServe's default (v1), left unrendered."""
    assert _predictor(_spec(model=model))["model"].get("protocolVersion") == protocol


def test_deployment_mode_is_the_annotation_kserve_reads() -> None:
    for mode in ("Serverless", "Standard"):
        obj = render(_entry("m.yaml", _spec(f"  deploymentMode: {mode}\n")), CONTEXT)
        assert obj["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == mode
    plain = render(_entry("m.yaml", _spec()), CONTEXT)
    assert "serving.kserve.io/deploymentMode" not in plain["metadata"]["annotations"]


def _errors(content: bytes) -> list[str]:
    return [str(d) for d in load_file("m.yaml", content).diagnostics]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            _spec("  scaling: {min: 1, maxReplicas: 3}\n"),
            "m.yaml:6:21: spec.scaling.maxReplicas: unknown field 'maxReplicas'; "
            "did you mean 'max'?",
            id="scaling-field",
        ),
        pytest.param(
            _spec("  scaling: {metric: qps}\n"),
            "m.yaml:6:21: spec.scaling.metric: 'qps' is not one of 'cpu', 'memory', "
            "'concurrency' or 'rps'; did you mean 'rps'?",
            id="scale-metric",
        ),
        pytest.param(
            _spec("  scaling: {min: 3, max: 2}\n"),
            "m.yaml:6:12: spec.scaling: min (3) is above max (2)",
            id="scaling-range",
        ),
        pytest.param(
            _spec("  deploymentMode: RawDeployment\n"),
            "m.yaml:6:19: spec.deploymentMode: 'RawDeployment' is KServe's other name of "
            "'Standard': write Standard",
            id="deployment-mode",
        ),
        pytest.param(
            _spec(model="{format: onnx, storageUri: s3://m, protocolVersion: v3}"),
            "m.yaml:5:62: spec.model.protocolVersion: 'v3' is not one of 'v1', 'v2', "
            "'grpc-v1' or 'grpc-v2'",
            id="protocol-version",
        ),
        pytest.param(
            _spec(model="{format: sklearn, storageUri: s3://m, storageUrls: []}"),
            "m.yaml:5:48: spec.model.storageUrls: unknown field 'storageUrls'; "
            "did you mean 'storageUris'?",
            id="storage-uris-typo",
        ),
        pytest.param(
            _spec(model="{format: sklearn, storage: {key: minio, pth: m}}"),
            "m.yaml:5:50: spec.model.storage.pth: unknown field 'pth'; did you mean 'path'?",
            id="storage-spec",
        ),
        pytest.param(
            _spec(model="{format: sklearn, storageUri: s3://m, storage: {key: minio}}"),
            "m.yaml:5:10: spec.model: give exactly one of storageUri, storage, storageUris, "
            "fromTrainingRun or fromModelDeployment (not storageUri and storage)",
            id="two-sources",
        ),
        pytest.param(
            _spec("  nodeSelecter: {gpu: 'true'}\n"),
            "m.yaml:6:3: spec.nodeSelecter: unknown field 'nodeSelecter'; "
            "did you mean 'nodeSelector'?",
            id="pod-setting",
        ),
        pytest.param(
            _spec("  tolerations: [{key: gpu, operator: Exist}]\n"),
            "m.yaml:6:38: spec.tolerations[0].operator: 'Exist' is not one of 'Exists' or "
            "'Equal'; did you mean 'Exists'?",
            id="toleration",
        ),
        pytest.param(
            _spec("  affinity: {nodeAfinity: {}}\n"),
            "m.yaml:6:14: spec.affinity.nodeAfinity: unknown field 'nodeAfinity'; "
            "did you mean 'nodeAffinity'?",
            id="affinity",
        ),
        pytest.param(
            _spec("  volumes: [{name: cache, emptyDir: {}, configMap: {name: c}}]\n"),
            "m.yaml:6:13: spec.volumes[0]: volume cache needs exactly one source (e.g. "
            "persistentVolumeClaim, secret, configMap, emptyDir), not 2",
            id="volume-source",
        ),
        pytest.param(
            _spec("  volumes: [{name: cache, gcePersistentDisk: {pdName: x}}]\n"),
            "m.yaml:6:13: spec.volumes[0]: volume source gcePersistentDisk is a deprecated "
            "in-tree plugin; use a persistentVolumeClaim or csi volume",
            id="volume-deprecated-plugin",
        ),
        pytest.param(
            _spec("  securityContext: {runAsNonroot: true}\n"),
            "m.yaml:6:21: spec.securityContext.runAsNonroot: unknown field 'runAsNonroot'; "
            "did you mean 'runAsNonRoot'?",
            id="security-context",
        ),
        pytest.param(
            _spec("  topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone}]\n"),
            "m.yaml:6:31: spec.topologySpreadConstraints[0].whenUnsatisfiable: "
            "required field is missing",
            id="topology-spread",
        ),
        pytest.param(
            _spec("  imagePullSecrets: [Registry_Creds]\n"),
            "m.yaml:6:22: spec.imagePullSecrets[0]: String should match pattern "
            "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'",
            id="pull-secret",
        ),
        pytest.param(
            _spec("  logger: {mode: everything}\n"),
            "m.yaml:6:18: spec.logger.mode: 'everything' is not one of 'all', 'request' or "
            "'response'",
            id="logger-mode",
        ),
        pytest.param(
            _spec("  batcher: {maxBatch: 8}\n"),
            "m.yaml:6:13: spec.batcher.maxBatch: unknown field 'maxBatch'; "
            "did you mean 'maxBatchSize'?",
            id="batcher",
        ),
        pytest.param(
            _spec("  explainer: {art: {type: SquareAtack}}\n"),
            "m.yaml:6:27: spec.explainer.art.type: 'SquareAtack' is not one of 'SquareAttack'; "
            "did you mean 'SquareAttack'?",
            id="art-type",
        ),
        pytest.param(
            _spec("  transformer: {containers: [{image: t:1, volumeMount: []}]}\n"),
            "m.yaml:6:43: spec.transformer.containers[0].volumeMount: unknown field "
            "'volumeMount'; did you mean 'volumeMounts'?",
            id="container-field",
        ),
        pytest.param(
            _spec("  containers: [{image: c:1}]\n"),
            "m.yaml:5:3: spec: give one of model or containers (a custom predictor)",
            id="model-and-containers",
        ),
        pytest.param(
            _spec(model="{format: sklearn, storageUri: s3://m, ports: [{containerPort: 0}]}"),
            "m.yaml:5:72: spec.model.ports[0].containerPort: Input should be greater than or "
            "equal to 1",
            id="port",
        ),
        pytest.param(
            _spec(model="{format: sklearn, storageUri: s3://m, volumeMounts: [{name: c}]}"),
            "m.yaml:5:63: spec.model.volumeMounts[0].mountPath: required field is missing",
            id="volume-mount",
        ),
        pytest.param(
            _spec("  scaling: {autoScaling: {metrics: [{resource: {name: cpu}}]}}\n"),
            "m.yaml:6:37: spec.scaling.autoScaling.metrics[0]: a Kubernetes MetricsSpec "
            "needs 'type'",
            id="auto-scaling-metric",
        ),
        pytest.param(
            _spec("  scaling: {containerConcurrency: -1}\n"),
            "m.yaml:6:35: spec.scaling.containerConcurrency: Input should be greater than or "
            "equal to 0",
            id="container-concurrency",
        ),
        pytest.param(
            _spec("  podAnnotation: {a: b}\n"),
            "m.yaml:6:3: spec.podAnnotation: unknown field 'podAnnotation'; "
            "did you mean 'podAnnotations'?",
            id="pod-annotations",
        ),
        pytest.param(
            _spec("  logger: {storage: {key: k, path: p}}\n"),
            "m.yaml:6:21: spec.logger.storage.parameters: required field is missing",
            id="logger-storage",
        ),
        pytest.param(
            _spec("  explainer: {art: {type: SquareAttack}, containers: [{image: e:1}]}\n"),
            "m.yaml:6:14: spec.explainer: give one of art or containers",
            id="explainer-both",
        ),
        pytest.param(
            _spec(
                "  containers: [{image: c:1, readinessProbe: {periodSeconds: 5}}]\n",
                model="{format: sklearn, storageUri: s3://m}",
            ).replace(b"  model: {format: sklearn, storageUri: s3://m}\n", b""),
            "m.yaml:5:45: spec.containers[0].readinessProbe: a Kubernetes Probe needs exactly "
            "one of exec, grpc, httpGet, tcpSocket",
            id="probe",
        ),
        pytest.param(
            _spec("  transformer: {image: t:1, containers: [{image: t:2}]}\n"),
            "m.yaml:6:16: spec.transformer: give one of image (one container) or containers",
            id="transformer-both",
        ),
        pytest.param(
            _spec(model="{format: sklearn, storageUri: s3://m, env: {K: {secretKeyRf: {}}}}"),
            "m.yaml:5:58: spec.model.env.K.secretKeyRf: unknown field 'secretKeyRf'; "
            "did you mean 'secretKeyRef'?",
            id="env-source-typo",
        ),
        pytest.param(
            _spec(
                model="{format: sklearn, storageUri: s3://m, env: {K: {secretKeyRef: {name: s}}}}"
            ),
            "m.yaml:5:72: spec.model.env.K.secretKeyRef.key: required field is missing",
            id="env-secret-key",
        ),
        pytest.param(
            _spec(model="{format: sklearn, storageUri: s3://m, env: {K: 3}}"),
            "m.yaml:5:57: spec.model.env.K: a value is text (quote numbers and booleans) or "
            "where it comes from ({secretKeyRef: ...}, {configMapKeyRef: ...}, {fieldRef: ...} "
            "or {resourceFieldRef: ...})",
            id="env-value",
        ),
        pytest.param(
            _spec("  overrides: [{merge: {kind: Deployment}}]\n"),
            "m.yaml:6:15: spec.overrides[0]: an override may not change '/kind': the object's "
            "apiVersion, kind, name and namespace are the spec's: gitsync keys its inventory, "
            "pruning and status on them",
            id="override-identity",
        ),
        pytest.param(
            _spec(
                "  overrides: [{jsonPatch: [{op: remove, "
                "path: /metadata/labels/gitsync.io~1instance}]}]\n"
            ),
            "m.yaml:6:15: spec.overrides[0]: an override may not change "
            "'/metadata/labels/gitsync.io~1instance': gitsync's own labels and annotations say "
            "whose object it is and whether it changed, so another instance could prune it",
            id="override-stamp",
        ),
        pytest.param(
            _spec("  overrides: [{merge: {spec: {predictor: {canaryTrafficPercent: 10}}}}]\n"),
            "m.yaml:6:15: spec.overrides[0]: an override may not change "
            "'/spec/predictor/canaryTrafficPercent': gitsync's rollout sets the traffic split "
            "(spec.rollout)",
            id="override-traffic",
        ),
        pytest.param(
            _spec("  overrides: [{jsonPatch: [{op: ad, path: /spec}]}]\n"),
            "m.yaml:6:33: spec.overrides[0].jsonPatch[0].op: 'ad' is not one of 'add', "
            "'remove', 'replace', 'move', 'copy' or 'test'; did you mean 'add'?",
            id="override-op",
        ),
        pytest.param(
            _spec("  overrides: [{mrege: {}}]\n"),
            "m.yaml:6:16: spec.overrides[0].mrege: unknown field 'mrege'; did you mean 'merge'?",
            id="override-typo",
        ),
    ],
)
def test_a_mistake_in_a_new_field_is_explained_at_its_line(content: bytes, expected: str) -> None:
    assert expected in _errors(content), _errors(content)


def test_merge_patch_follows_rfc_7386() -> None:
    """The RFC's own examples (appendix A): null removes, mappings merge, lists replace."""
    from gitsync.render import merge_patch  # noqa: PLC0415

    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge_patch({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch([1, 2], {"a": "b", "c": None}) == {"a": "b"}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


BROKEN = _spec(
    """\
  overrides:
    - merge: {spec: {predictor: {timeout: 30}}}
    - jsonPatch: [{op: replace, path: /spec/predictor/nope/x, value: 1}]
"""
)


def _evaluate(files: dict[str, bytes]) -> Any:
    loaded = load_tree(
        [load_file(path, content) for path, content in files.items()], default_namespace="ml"
    )
    return Evaluator().evaluate(
        loaded, policies=PolicySet(()), context=CONTEXT, blobs={p: p for p in files}
    )


def test_an_override_that_does_not_apply_is_that_specs_error_only() -> None:
    """A bad path is a diagnostic at the override's line; the spec is invalid (its
    objects kept, not pruned) and the other specs render as usual."""
    other = MODEL.replace("name: m,", "name: other,").encode()
    evaluation = _evaluate({"bad.yaml": BROKEN, "other.yaml": other})
    (diagnostic,) = evaluation.loaded.diagnostics
    assert str(diagnostic).startswith(
        "bad.yaml:8:7: spec.overrides[1]: jsonPatch[0] (replace /spec/predictor/nope/x) "
        "does not apply to the rendered object: "
    )
    assert "bad.yaml" in evaluation.loaded.failed_paths
    assert [e.name for e in evaluation.loaded.entries] == ["other"]
    assert [r.name for r in evaluation.loaded.rejected] == ["m"]
    (body,) = evaluation.desired
    assert body is not None
    assert body["metadata"]["name"] == "other"


def test_a_failed_test_operation_is_an_error_too() -> None:
    content = _spec(
        "  overrides: [{jsonPatch: [{op: add, path: /spec/predictor/timeout, value: 9},"
        " {op: test, path: /spec/predictor/model/modelFormat/name, value: onnx}]}]\n"
    )
    (diagnostic,) = _evaluate({"m.yaml": content}).loaded.diagnostics
    assert diagnostic.field == "spec.overrides[0]"
    assert (diagnostic.line, diagnostic.column) == (6, 15)
    assert diagnostic.message.startswith(
        "jsonPatch[1] (test /spec/predictor/model/modelFormat/name) does not apply to the "
        "rendered object: sklearn (<class 'str'>) is not equal to tested value onnx"
    )


def test_overrides_apply_before_the_stamps_and_the_hash() -> None:
    """What the override sets is in the object and in its applied hash; the stamps
    are gitsync's whatever the patches said."""
    body = render(_entry("overrides.yaml", (CASES / "overrides.yaml").read_bytes()), CONTEXT)
    predictor = body["spec"]["predictor"]
    assert predictor["terminationGracePeriodSeconds"] == 45
    assert predictor["model"]["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"
    plain = render(
        _entry("overrides.yaml", (CASES / "overrides.yaml").read_bytes().split(b"  overrides")[0]),
        CONTEXT,
    )
    hashes = [b["metadata"]["annotations"]["gitsync.io/applied-hash"] for b in (body, plain)]
    assert hashes[0] != hashes[1]
    assert body["metadata"]["labels"]["gitsync.io/instance"] == "cases"


def test_training_runs_take_overrides_and_keep_their_names_without() -> None:
    run = b"""\
apiVersion: gitsync.io/v1alpha1
kind: TrainingRun
metadata: {name: train, namespace: ml}
spec:
  framework: pytorch
  image: ghcr.io/acme/train:1
  replicas: {master: 1}
"""
    plain = render(_entry("t.yaml", run), CONTEXT)
    patched = render(
        _entry(
            "t.yaml",
            run + b"  overrides: [{merge: {spec: {runPolicy: {schedulingPolicy: {queue: q}}}}}]\n",
        ),
        CONTEXT,
    )
    assert patched["spec"]["runPolicy"]["schedulingPolicy"] == {"queue": "q"}
    # A new spec is a new run. (That a spec without overrides keeps the name it had
    # before the field existed, the golden files of test_render show.)
    assert patched["metadata"]["name"] != plain["metadata"]["name"]
