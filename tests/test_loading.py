"""Loading and validation: every problem is located precisely; nothing stops the rest."""

from __future__ import annotations

import pytest

from gitsync.loading import CONFIG_FILE, load_config, load_file, load_tree, select_paths
from gitsync.specs import Config

MODEL = b"""\
apiVersion: gitsync.io/v1alpha1
kind: ModelDeployment
metadata:
  name: fraud
spec:
  model:
    format: sklearn
    storageUri: s3://models/fraud/v1
"""


def _errors(content: bytes, path: str = "models/m.yaml") -> list[str]:
    return [str(d) for d in load_file(path, content).diagnostics]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            MODEL.replace(b"storageUri", b"storageURI"),
            [
                "models/m.yaml:8:5: spec.model.storageURI: unknown field 'storageURI'; "
                "did you mean 'storageUri'?"
            ],
            id="typo-suggests-field",
        ),
        pytest.param(
            MODEL.replace(b"sklearn", b"skleran"),
            [
                "models/m.yaml:7:13: spec.model.format: 'skleran' is not one of 'sklearn', "
                "'xgboost', 'lightgbm', 'tensorflow', 'pytorch', 'onnx', 'triton', 'tensorrt', "
                "'huggingface', 'pmml', 'paddle', 'mlflow', 'openvino' or 'autogluon'; "
                "did you mean 'sklearn'?"
            ],
            id="enum-typo-suggests-value",
        ),
        pytest.param(
            MODEL.replace(b"s3://models/fraud/v1", b"ftp://x"),
            [
                "models/m.yaml:8:17: spec.model.storageUri: 'ftp://x' has no scheme KServe v0.20 "
                "reads (gs://, s3://, pvc://, file://, https://, http://, hdfs://, webhdfs://, "
                "oci://, oci+native://, hf://)"
            ],
            id="storage-scheme",
        ),
        pytest.param(
            MODEL.replace(b"name: fraud", b"name: Fraud_Model"),
            [
                "models/m.yaml:4:9: metadata.name: String should match pattern "
                "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"
            ],
            id="dns-label",
        ),
        pytest.param(
            MODEL + b"  replicas: {min: 3, max: 2}\n",
            ["models/m.yaml:9:13: spec.replicas: min (3) is above max (2)"],
            id="cross-field",
        ),
        pytest.param(
            MODEL + b"  resources: {limits: {cpu: lots}}\n",
            [
                "models/m.yaml:9:29: spec.resources.limits.cpu: 'lots' is not a Kubernetes "
                "quantity (e.g. 500m, 2Gi, 1)"
            ],
            id="quantity",
        ),
        pytest.param(
            MODEL.replace(b"    format: sklearn\n", b""),
            ["models/m.yaml:7:5: spec.model.format: required field is missing"],
            id="missing-field",
        ),
        pytest.param(
            MODEL.replace(b"ModelDeployment", b"ModelDeploy"),
            [
                "models/m.yaml:2:7: kind: unknown kind 'ModelDeploy' in gitsync.io/v1alpha1; "
                "did you mean 'ModelDeployment'?"
            ],
            id="unknown-kind",
        ),
        pytest.param(
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
            ["models/m.yaml:3:1: metadata.name: required field is missing"],
            id="manifest-without-name",
        ),
        pytest.param(
            b"model: [1,\n  2\n",
            ["models/m.yaml:3:1: invalid YAML: did not find expected ',' or ']'"],
            id="broken-yaml",
        ),
        pytest.param(
            b"- just\n- a list\n",
            ["models/m.yaml:1:1: a document must be a mapping, not a list"],
            id="not-a-mapping",
        ),
    ],
)
def test_diagnostics_name_file_line_column_and_field(content: bytes, expected: list[str]) -> None:
    assert _errors(content) == expected


def test_training_run_rules() -> None:
    run = b"""\
apiVersion: gitsync.io/v1alpha1
kind: TrainingRun
metadata: {name: t}
spec:
  framework: pytorch
  image: ghcr.io/acme/train:1
  replicas: {chief: 1, master: 2}
"""
    assert _errors(run) == [
        "models/m.yaml:7:13: spec.replicas: replica role(s) chief unknown for pytorch; "
        "use master, worker"
    ]


def test_one_bad_document_does_not_hide_the_good_ones() -> None:
    content = MODEL + b"---\n" + MODEL.replace(b"fraud", b"churn").replace(b"format", b"fromat")
    result = load_file("models/m.yaml", content)

    assert [e.name for e in result.entries] == ["fraud"]
    assert [str(d) for d in result.diagnostics] == [
        "models/m.yaml:16:5: spec.model.fromat: unknown field 'fromat'; did you mean 'format'?"
    ]
    assert [(r.kind, r.name) for r in result.rejected] == [("ModelDeployment", "churn")]
    assert result.failed


def test_duplicates_are_an_error_on_both_places() -> None:
    first = load_file("a.yaml", MODEL)
    second = load_file("b.yaml", b"# comment\n" + MODEL)
    other = load_file("c.yaml", MODEL.replace(b"fraud", b"churn"))

    result = load_tree([first, second, other], default_namespace="ml")

    assert [str(d) for d in result.diagnostics] == [
        "a.yaml:1:1: ModelDeployment ml/fraud is also declared at b.yaml:1",
        "b.yaml:1:1: ModelDeployment ml/fraud is also declared at a.yaml:1",
    ]
    assert [e.name for e in result.entries] == ["churn"]
    assert result.failed_paths == {"a.yaml", "b.yaml"}


def test_same_name_in_other_namespace_is_no_duplicate() -> None:
    first = load_file("a.yaml", MODEL)
    second = load_file("b.yaml", MODEL.replace(b"name: fraud", b"name: fraud\n  namespace: x"))
    assert load_tree([first, second], default_namespace="ml").diagnostics == ()


def test_config_defaults_and_errors() -> None:
    config, problems = load_config(b"defaults: {namespace: ml}\nprune: {maxRatio: 0.2}\n")
    assert problems == []
    assert config.defaults.namespace == "ml"
    assert config.prune.max_ratio == 0.2

    config, problems = load_config(b"selfheal: false\n")
    assert [str(p) for p in problems] == [
        f"{CONFIG_FILE}:1:1: selfheal: unknown field 'selfheal'; did you mean 'selfHeal'?"
    ]
    assert config == Config()


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (["**/*.yaml"], [], ["specs/a.yaml", "specs/deep/b.yaml"]),
        (["*.yaml"], [], ["specs/a.yaml"]),
        (["**/*.yaml"], ["deep/**"], ["specs/a.yaml"]),
        (["**/*.yml"], [], ["specs/c.yml"]),
    ],
)
def test_select_paths_by_globs_under_root(
    include: list[str], exclude: list[str], expected: list[str]
) -> None:
    paths = [
        "specs/a.yaml",
        "specs/deep/b.yaml",
        "specs/c.yml",
        "specs/gitsync.yaml",
        "other/d.yaml",
        "README.md",
    ]
    config = Config.model_validate({"include": include, "exclude": exclude})
    assert select_paths(paths, root="specs", config=config) == expected
