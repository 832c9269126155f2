"""Compiled policies remembered across processes (gitsync.policy.compile's store).

A remembered policy must judge exactly as one compiled afresh, a remembered entry
that does not fit its document must never be used, and a policy that does not
compile must never be remembered. The real CEL runtime and the real disk cache run
every test; nothing is mocked.
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gitsync.cache import DiskCache
from gitsync.policy import LIBRARY_DIR, PolicySet, load_policies, load_policy_dirs
from gitsync.policy import cel as cel_module
from gitsync.policy.compile import ProgramStore
from gitsync.render import render
from tests.examples import examples_context, load_examples


class Counting(DiskCache):
    """The disk cache, counting what it is asked and what it is given."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.root = root
        self.gets = 0
        self.puts = 0

    def get(self, key: str) -> object | None:
        self.gets += 1
        return super().get(key)

    def put(self, key: str, value: object) -> None:
        self.puts += 1
        super().put(key, value)


def shipped(store: ProgramStore | None) -> PolicySet:
    policies, diagnostics = load_policy_dirs([LIBRARY_DIR], programs=store)
    assert diagnostics == []
    return policies


def refuse_checking(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on only programs planned from remembered bytes can load."""

    def refuse(variables: object) -> object:
        raise AssertionError("a remembered policy was checked again")

    monkeypatch.setattr(cel_module, "checker", refuse)


def cases() -> list[tuple[str, dict[str, Any], dict[str, Any] | None, str]]:
    """(kind, object, rendered, namespace): the examples as written and rendered, and
    each one spoilt so that policies deny it (labels gone, a GPU count too big, an
    image from anywhere), so passes, denials and their messages are all compared."""
    config, loaded = load_examples()
    context = examples_context(config, loaded, instance="programs")
    found: list[tuple[str, dict[str, Any], dict[str, Any] | None, str]] = []
    for entry in loaded.entries:
        namespace = entry.namespace(config.defaults.namespace)
        body = render(entry, context)
        written = (
            entry.spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
            if (entry.spec is not None)
            else dict(entry.manifest or {})
        )
        found.append((entry.kind, written, body, namespace))
        spoilt = copy.deepcopy(written)
        spoilt.get("metadata", {}).pop("labels", None)
        spoilt.setdefault("spec", {})["resources"] = {"limits": {"nvidia.com/gpu": 64}}
        spoilt["spec"]["image"] = "docker.io/anyone/anything:latest"
        found.append((entry.kind, spoilt, body, "kube-system"))
    return found


def verdicts(policies: PolicySet) -> list[str]:
    return [
        repr(
            policies.evaluate(
                kind=kind, object=obj, rendered=rendered, old_object=None, namespace=namespace
            )
        )
        for kind, obj, rendered, namespace in cases()
    ]


def test_a_remembered_library_judges_as_one_compiled_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = verdicts(shipped(None))
    first = Counting(tmp_path / "eval")
    verdicts_first = verdicts(shipped(first))
    assert first.puts == len(list(LIBRARY_DIR.glob("*.yaml")))
    # Another process: a new cache object on the same folder, and no checker at all.
    later = Counting(tmp_path / "eval")
    refuse_checking(monkeypatch)
    remembered = verdicts(shipped(later))
    assert later.puts == 0
    assert fresh == verdicts_first == remembered
    assert any("passed=False" in v for v in fresh) and any("passed=True" in v for v in fresh)


POLICY = textwrap.dedent(
    """\
    apiVersion: gitsync.io/v1alpha1
    kind: Policy
    metadata:
      name: bounded-replicas
    spec:
      match:
        kinds: [ModelDeployment]
      matchConditions:
        - name: has_spec
          expression: has(object.spec)
      variables:
        - name: replicas
          expression: object.spec.?replicas.orValue({})
        - name: most
          expression: variables.replicas.?max.orValue(1)
      validations:
        - expression: variables.most <= params.limit
          messageExpression: "'at most ' + string(params.limit) + ' replicas'"
          reason: Forbidden
      params:
        limit: 4
    """
)


def judge(policies: PolicySet, most: int) -> list[str]:
    results = policies.evaluate(
        kind="ModelDeployment",
        object={"metadata": {"name": "m"}, "spec": {"replicas": {"max": most}}},
        rendered=None,
        old_object=None,
        namespace="ns",
    )
    return [f"{r.passed}:{[v.message for v in r.violations]}" for r in results]


def load(store: ProgramStore | None, text: str = POLICY) -> PolicySet:
    policies, diagnostics = load_policies([("policies/p.yaml", text.encode())], programs=store)
    assert diagnostics == []
    return policies


def entry_of(store: Counting) -> tuple[str, dict[str, Any]]:
    load(store)
    lines = (store.root / "entries").read_bytes().split(b"\n")
    keys = [line.split(b" ", 1)[0].decode() for line in lines if line]
    assert len(keys) == 1
    value = store.get(keys[0])
    assert isinstance(value, dict)
    return keys[0], value


def _swap_levels(entry: dict[str, Any]) -> None:
    entry["variables"].reverse()


SPOILERS: list[tuple[str, Callable[[dict[str, Any]], object]]] = [
    ("not a mapping", lambda e: e.clear()),
    ("a field more", lambda e: e.update(extra=1)),
    ("a condition less", lambda e: e["conditions"].pop()),
    ("a validation less", lambda e: e["validations"].pop()),
    ("a message program lost", lambda e: e["validations"][0].__setitem__(1, None)),
    ("a variable's index repeated", lambda e: e["variables"][1][0].__setitem__(0, 0)),
    ("a variable's index a string", lambda e: e["variables"][0][0].__setitem__(0, "0")),
    ("an empty level", lambda e: e["variables"].append([])),
    ("bytes not base64", lambda e: e["conditions"].__setitem__(0, "not base64!")),
    ("bytes the runtime refuses", lambda e: e["conditions"].__setitem__(0, "Z2FyYmFnZQ==")),
    ("bytes not a string", lambda e: e["validations"][0].__setitem__(0, 7)),
]


@pytest.mark.parametrize("spoil", [s for _, s in SPOILERS], ids=[n for n, _ in SPOILERS])
def test_a_remembered_policy_that_does_not_fit_is_compiled_afresh(
    tmp_path: Path, spoil: Callable[[dict[str, Any]], object]
) -> None:
    store = Counting(tmp_path / "eval")
    key, entry = entry_of(store)
    spoil(entry)
    store.put(key, entry)
    store.puts = 0
    policies = load(store)
    assert store.puts == 1  # compiled again, and remembered again
    assert judge(policies, 3) == ["True:[]"]
    assert judge(policies, 9) == ["False:['at most 4 replicas']"]


def test_wrong_levels_never_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry whose levels are out of order (a forged or foreign one) is still used,
    but a variable read before it is bound errors, and an error is never a pass."""
    store = Counting(tmp_path / "eval")
    key, entry = entry_of(store)
    _swap_levels(entry)
    store.put(key, entry)
    refuse_checking(monkeypatch)
    policies = load(store)
    assert all(verdict.startswith("False:") for verdict in judge(policies, 3))


def test_another_document_is_another_entry(tmp_path: Path) -> None:
    store = Counting(tmp_path / "eval")
    load(store)
    tighter = load(store, POLICY.replace("limit: 4", "limit: 2"))
    assert store.puts == 2
    assert judge(tighter, 3) == ["False:['at most 2 replicas']"]


def test_a_policy_that_does_not_compile_is_never_remembered(tmp_path: Path) -> None:
    store = Counting(tmp_path / "eval")
    broken = POLICY.replace("variables.most <= params.limit", "variables.mots <= params.limit")
    for _ in range(2):
        policies, diagnostics = load_policies(
            [("policies/p.yaml", broken.encode())], programs=store
        )
        assert len(policies) == 0
        assert [(d.line, d.field) for d in diagnostics] == [(17, "spec.validations[0].expression")]
        assert "unknown variable 'mots'" in diagnostics[0].message
    assert store.puts == 0
