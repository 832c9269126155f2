"""Hostile spec files: each fails its own file, fast and in bounded memory, and names
where the problem is. Without the checks in gitsync.loading each of these either
renamed or dropped an object (and so pruned it), or ate time and memory."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
import time

import pytest

from gitsync.loading import MAX_ERRORS_PER_FILE, FileResult, load_file, load_tree

CONFIGMAP = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: ns}\n"


def bomb(levels: int = 9) -> bytes:
    lines = [b'data:\n  l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels + 1):
        refs = ",".join([f"*l{level - 1}"] * 9)
        lines.append(f"  l{level}: &l{level} [{refs}]".encode())
    return CONFIGMAP + b"\n".join(lines) + b"\n"


def only_error(result: FileResult) -> str:
    assert result.failed
    assert not result.entries
    assert len(result.diagnostics) == 1
    return str(result.diagnostics[0])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            CONFIGMAP + b"metadata:\n  name: renamed\n",
            "f.yaml:4:1: metadata: duplicate key 'metadata' (first on line 3)",
            id="duplicate-key",
        ),
        pytest.param(
            CONFIGMAP + b"data:\n  a: 1\n  b: 2\n  a: 3\n",
            "f.yaml:7:3: data.a: duplicate key 'a' (first on line 5)",
            id="duplicate-nested-key",
        ),
        pytest.param(
            CONFIGMAP + b"data: {a: \xff}\n",
            "f.yaml:4:11: invalid UTF-8: byte 0xff at byte 83",
            id="invalid-utf8",
        ),
        pytest.param(
            CONFIGMAP + b"\x00\x01\x02",
            "f.yaml:4:1: binary content: a NUL byte at byte 73",
            id="binary",
        ),
        pytest.param(
            b"apiVersion: gitsync.io/v1beta1\nkind: ModelDeployment\nmetadata: {name: m}\n",
            "f.yaml:1:13: apiVersion: 'gitsync.io/v1beta1' is not gitsync's apiVersion "
            "'gitsync.io/v1alpha1'",
            id="gitsync-kind-other-version",
        ),
        pytest.param(
            b"apiVersion: v1\nkind: TrainingRun\nmetadata: {name: m}\n",
            "f.yaml:1:13: apiVersion: 'v1' is not gitsync's apiVersion 'gitsync.io/v1alpha1'",
            id="gitsync-kind-core-version",
        ),
        pytest.param(
            b"a:\n" + b"".join(b" " * i + b"a:\n" for i in range(1, 120)) + b" " * 120 + b"1\n",
            "nested deeper than 100 levels",
            id="deep-nesting",
        ),
        pytest.param(
            CONFIGMAP + b"data: &big {a: " + b"x" * 700_000 + b"}\nmore: [*big, *big, *big]\n"
            b"again: [*big, *big, *big, *big, *big, *big, *big, *big, *big, *big, *big]\n",
            "aliases expand this beyond",
            id="alias-repeats-a-long-string",
        ),
        pytest.param(bomb(), "f.yaml:11:7: data.l6: aliases expand this beyond", id="alias-bomb"),
        pytest.param(
            CONFIGMAP + b"data: {when: 2001-02-30}\n",
            "f.yaml:1:1: a value YAML cannot read: day is out of range for month",
            id="impossible-date",
        ),
        pytest.param(
            CONFIGMAP + b"data: {n: !!int many}\n",
            "f.yaml:1:1: a value YAML cannot read: invalid literal for int()",
            id="tag-that-cannot-hold-its-value",
        ),
        pytest.param(
            CONFIGMAP + b"data: {a: " + b"x" * (2 << 20) + b"}\n",
            "f.yaml:1:1: file is 2097237 bytes; spec files are at most 1048576",
            id="too-big",
        ),
    ],
)
def test_a_file_that_cannot_be_read_as_specs_fails_with_its_place(
    content: bytes, expected: str
) -> None:
    assert expected in only_error(load_file("f.yaml", content))


def test_a_failed_file_keeps_its_objects_and_the_others_load() -> None:
    loaded = load_tree(
        [
            load_file("bad.yaml", CONFIGMAP + b"metadata:\n  name: renamed\n"),
            load_file("good.yaml", CONFIGMAP.replace(b"settings", b"other")),
        ],
        default_namespace="ns",
    )
    assert loaded.failed_paths == {"bad.yaml"}
    assert [e.name for e in loaded.entries] == ["other"]


def test_merge_keys_are_no_duplicates() -> None:
    content = CONFIGMAP + b"x: &x {a: 1}\ndata:\n  <<: *x\n  b: '2'\n"
    result = load_file("f.yaml", content)
    assert not result.failed
    assert result.entries[0].manifest is not None
    assert result.entries[0].manifest["data"] == {"a": 1, "b": "2"}


def test_thousands_of_errors_in_one_file_are_fast_and_capped() -> None:
    spec = textwrap.dedent("""\
        apiVersion: gitsync.io/v1alpha1
        kind: ModelDeployment
        metadata: {name: m}
        spec:
          model: {format: sklearn, storageUri: "s3://m/v1"}
        """).encode()
    content = spec + b"".join(f"  unknown{i}: 1\n".encode() for i in range(2000))
    started = time.monotonic()
    result = load_file("f.yaml", content)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"2,000 errors took {elapsed:.1f} s"  # was 36 s
    assert len(result.diagnostics) == MAX_ERRORS_PER_FILE + 1
    assert str(result.diagnostics[0]) == "f.yaml:6:3: spec.unknown0: unknown field 'unknown0'"
    assert result.diagnostics[-1].message == "1980 more problems in this file"
    assert result.diagnostics[-1].line == 6 + MAX_ERRORS_PER_FILE


def test_a_5_mb_file_is_refused_at_once() -> None:
    content = CONFIGMAP + b"data:\n" + b"".join(f"  k{i}: v\n".encode() for i in range(500_000))
    assert len(content) > 5_000_000
    started = time.monotonic()
    assert "spec files are at most" in only_error(load_file("f.yaml", content))
    assert time.monotonic() - started < 0.5


_BOUNDED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from gitsync.evaluation import Evaluator
from gitsync.loading import load_file, load_tree
from gitsync.policy import load_library
from gitsync.render import RenderContext
content = sys.stdin.buffer.read()
loaded = load_tree([load_file("bomb.yaml", content)], default_namespace="ns")
policies, _ = load_library()
context = RenderContext(instance="i", default_namespace="ns")
Evaluator().evaluate(loaded, policies=policies, blobs={{}}, context=context)
print(sorted(loaded.failed_paths), [str(d) for d in loaded.diagnostics])
"""


def test_an_alias_bomb_is_refused_in_bounded_time_and_memory() -> None:
    """Loaded, rendered and judged by the shipped policies, as a cycle would, in a
    process that may not grow past 1 GiB (the bomb grew past 6.5 GB before)."""
    limit = 1 << 30
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    assert soft == resource.RLIM_INFINITY or soft > limit
    run = subprocess.run(
        [sys.executable, "-c", _BOUNDED.format(limit=limit)],
        input=bomb(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert "['bomb.yaml']" in run.stdout.decode()
    assert "aliases expand this beyond" in run.stdout.decode()
