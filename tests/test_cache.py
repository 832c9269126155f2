"""gitsync's cache on disk (policy verdicts, status documents' YAML): an entry is used
when it is whole and for the very same inputs, never otherwise.

Each test compares a run that reads the cache with a cold run (no cache at all): a
stale, corrupted or foreign entry must leave the outcome exactly as a cold run has
it, because a wrong remembered verdict would apply a spec a policy denies.

Compaction's tests (at the end) check that a rewrite keeps what the process used, and
what others appended meanwhile, with their values, drops the rest, and never leaves a
reader a partial file or a used line that a read would refuse.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import hashlib
import math
import os
import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import yaml

from gitsync.cache import COMPACT_FLOOR, ENTRIES, STALE_TEMP_SECONDS, DiskCache
from gitsync.clients.git import Author, GitSource
from gitsync.evaluation import Evaluation, Evaluator
from gitsync.loading import LoadResult
from gitsync.policy import PolicyResult, PolicySet, load_library
from gitsync.render import RenderContext
from gitsync.snapshot import Snapshot, read_folder, read_snapshot
from gitsync.status_store import StatusStore
from gitsync.verdict_cache import DiskVerdictStore
from tests.examples import EXAMPLES, walked_pipeline
from tests.specrepo import SpecRepo, git

#: A deny and a warn policy with a verdict that differs between specs, so that a
#: verdict remembered for the wrong spec or the wrong policy would show.
EXTRA = """\
apiVersion: gitsync.io/v1alpha1
kind: Policy
metadata: {{name: name-rules}}
spec:
  severity: {severity}
  match: {{kinds: ["*"]}}
  validations:
    - expression: "!object.metadata.name.contains('{letter}')"
      message: "no '{letter}' in a name"
"""


def policies(letter: str = "a", severity: str = "deny") -> PolicySet:
    extra = EXTRA.format(letter=letter, severity=severity).encode()
    found, diagnostics = load_library(extra_sources=[("extra.yaml", extra)])
    assert not [d for d in diagnostics if d.severity.value == "error"], diagnostics
    return found


class CountingStore(DiskVerdictStore):
    """The disk store, counting the verdicts it hands back."""

    hits = 0

    def get(self, key: str) -> tuple[PolicyResult, ...] | None:
        found = super().get(key)
        self.hits += found is not None
        return found


class CountingCache(DiskCache):
    """The disk cache, counting the values asked for and those it hands back."""

    asked = 0
    hits = 0

    def get(self, key: str) -> object | None:
        found = super().get(key)
        self.asked += 1
        self.hits += found is not None
        return found


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return read_folder(EXAMPLES)


def render_context(snap: Snapshot, *, instance: str) -> RenderContext:
    """With the examples' pipeline walked, so that every example renders."""
    namespace = snap.config.defaults.namespace
    return RenderContext(
        instance=instance,
        default_namespace=namespace,
        trained=walked_pipeline(snap.loaded, default_namespace=namespace),
    )


def evaluate(snap: Snapshot, library: PolicySet, store: DiskVerdictStore | None) -> Evaluation:
    """A fresh evaluator each time, as each `gitsync sync` process has."""
    context = render_context(snap, instance="cache")
    return Evaluator(store=store).evaluate(
        snap.loaded, policies=library, context=context, blobs=snap.blobs
    )


def outcome(evaluation: Evaluation) -> tuple[object, ...]:
    verdicts = evaluation.verdicts
    return (
        [(e.path, e.document, r) for e, r in verdicts.results],
        [(e.path, e.document) for e in verdicts.entries],
        verdicts.diagnostics,
        evaluation.loaded.rejected,
    )


def cache_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def entries(root: Path) -> list[bytes]:
    """The cache's lines, each ``<key> <checksum> <payload>``, as written."""
    path = root / ENTRIES
    return [line for line in path.read_bytes().split(b"\n") if line] if path.exists() else []


def write_entries(root: Path, lines: list[bytes]) -> None:
    (root / ENTRIES).write_bytes(b"".join(line + b"\n" for line in lines))


def key_of(line: bytes) -> str:
    return line.split(b" ", 1)[0].decode()


def usable(root: Path) -> dict[str, bytes]:
    """Each key's line that a read would use (the last), for comparing two caches."""
    return {key_of(line): line for line in entries(root)}


def test_a_warm_run_takes_every_verdict_from_the_cache_and_equals_a_cold_one(
    snap: Snapshot, tmp_path: Path
) -> None:
    library = policies()
    cold = outcome(evaluate(snap, library, None))
    denied = [r for _, _, r in cold[0] if r.denied]  # type: ignore[attr-defined]
    assert denied, "the test's policy denies some example spec"

    assert outcome(evaluate(snap, library, DiskVerdictStore(DiskCache(tmp_path)))) == cold
    assert cache_files(tmp_path) == [tmp_path / ENTRIES]
    assert len(entries(tmp_path)) == len(snap.loaded.entries)

    warm = CountingStore(DiskCache(tmp_path))
    assert outcome(evaluate(snap, library, warm)) == cold
    assert warm.hits == len(snap.loaded.entries)


@pytest.mark.parametrize("where", ["checksum", "payload", "last byte"])
def test_a_flipped_byte_makes_an_entry_unused(snap: Snapshot, tmp_path: Path, where: str) -> None:
    library = policies()
    cold = outcome(evaluate(snap, library, None))
    evaluate(snap, library, DiskVerdictStore(DiskCache(tmp_path)))
    flipped = []
    for line in entries(tmp_path):
        data = bytearray(line)
        start = data.index(b" ") + 1  # the checksum's first byte
        index = {"checksum": start + 3, "payload": start + 65 + 10, "last byte": -1}[where]
        data[index] ^= 0x01
        flipped.append(bytes(data))
    write_entries(tmp_path, flipped)

    store = CountingStore(DiskCache(tmp_path))
    assert outcome(evaluate(snap, library, store)) == cold
    assert store.hits == 0


def test_a_truncated_or_emptied_entry_is_unused(snap: Snapshot, tmp_path: Path) -> None:
    library = policies()
    cold = outcome(evaluate(snap, library, None))
    evaluate(snap, library, DiskVerdictStore(DiskCache(tmp_path)))
    lines = entries(tmp_path)
    # Half lines (a writer killed mid-write) and lines cut to their key alone.
    cut = [line[: len(line) // 2] if number % 2 else line[:40] for number, line in enumerate(lines)]
    (tmp_path / ENTRIES).write_bytes(b"\n".join(cut))

    store = CountingStore(DiskCache(tmp_path))
    assert outcome(evaluate(snap, library, store)) == cold
    assert store.hits == 0


def _rewrite(key: str, document: object) -> bytes:
    """An entry of ``key`` with a valid checksum over ``document``: as if a foreign
    writer (an older gitsync, another tool) had put it there."""
    payload = orjson.dumps(document)
    return key.encode() + b" " + hashlib.sha256(payload).hexdigest().encode() + b" " + payload


#: Whole entries (their checksums hold) that this gitsync never writes.
WRONG_DOCUMENTS: dict[str, Callable[[str], object]] = {
    "not an object": lambda key: [],
    "no value": lambda key: {"key": key},
    "a field more": lambda key: {"key": key, "value": [], "by": "me"},
}
#: Values of the right key that are not a list of results.
WRONG_VALUES: dict[str, object] = {
    "results not a list": {"policy": "x"},
    "a result not an object": ["passed"],
    "a missing field": [{"policy": "p", "severity": "deny", "passed": True}],
    "an extra field": [
        {"policy": "p", "severity": "deny", "passed": True, "violations": [], "by": "me"}
    ],
    "an unknown severity": [{"policy": "p", "severity": "fatal", "passed": True, "violations": []}],
    "passed as a number": [{"policy": "p", "severity": "deny", "passed": 1, "violations": []}],
    "failed without a violation": [
        {"policy": "p", "severity": "deny", "passed": False, "violations": []}
    ],
    "a violation with a wrong type": [
        {
            "policy": "p",
            "severity": "deny",
            "passed": False,
            "violations": [{"expression": "e", "message": 1, "reason": "r", "error": False}],
        }
    ],
}
WRONG_DOCUMENTS.update(
    (name, functools.partial(lambda value, key: {"key": key, "value": value}, value))
    for name, value in WRONG_VALUES.items()
)


@pytest.mark.parametrize("shape", sorted(WRONG_DOCUMENTS))
def test_a_wrong_shaped_entry_is_unused(snap: Snapshot, tmp_path: Path, shape: str) -> None:
    library = policies()
    cold = outcome(evaluate(snap, library, None))
    evaluate(snap, library, DiskVerdictStore(DiskCache(tmp_path)))
    write_entries(
        tmp_path,
        [
            _rewrite(key_of(line), WRONG_DOCUMENTS[shape](key_of(line)))
            for line in entries(tmp_path)
        ],
    )

    store = CountingStore(DiskCache(tmp_path))
    assert outcome(evaluate(snap, library, store)) == cold
    assert store.hits == 0


def test_an_entry_moved_to_another_key_is_unused(snap: Snapshot, tmp_path: Path) -> None:
    """A whole, well-formed entry under the wrong name (a copy, a rename): its key
    says whose verdict it is."""
    library = policies()
    cold = outcome(evaluate(snap, library, None))
    evaluate(snap, library, DiskVerdictStore(DiskCache(tmp_path)))
    lines = entries(tmp_path)
    keys = [key_of(line) for line in lines]
    bodies = [line.split(b" ", 1)[1] for line in lines]
    write_entries(
        tmp_path,
        [
            key.encode() + b" " + body
            for key, body in zip(keys, [*bodies[1:], bodies[0]], strict=True)
        ],
    )

    store = CountingStore(DiskCache(tmp_path))
    assert outcome(evaluate(snap, library, store)) == cold
    assert store.hits == 0


@pytest.mark.parametrize(
    ("letter", "severity"), [("e", "deny"), ("a", "warn")], ids=["a rule", "a severity"]
)
def test_a_changed_policy_library_uses_no_verdict_of_the_old_one(
    snap: Snapshot, tmp_path: Path, letter: str, severity: str
) -> None:
    evaluate(snap, policies(), DiskVerdictStore(DiskCache(tmp_path)))
    changed = policies(letter, severity)
    cold = outcome(evaluate(snap, changed, None))
    assert cold != outcome(evaluate(snap, policies(), None)), "the change changes verdicts"

    store = CountingStore(DiskCache(tmp_path))
    assert outcome(evaluate(snap, changed, store)) == cold
    assert store.hits == 0


def test_a_changed_render_context_uses_no_verdict_of_the_old_one(
    snap: Snapshot, tmp_path: Path
) -> None:
    """The rendering is among a verdict's inputs: another instance renders other
    labels on every object, so none of its verdicts comes from the first's."""
    library = policies()
    evaluate(snap, library, DiskVerdictStore(DiskCache(tmp_path)))
    context = render_context(snap, instance="other")

    def other(store: DiskVerdictStore | None) -> Evaluation:
        return Evaluator(store=store).evaluate(
            snap.loaded, policies=library, context=context, blobs=snap.blobs
        )

    store = CountingStore(DiskCache(tmp_path))
    assert outcome(other(store)) == outcome(other(None))
    assert store.hits == 0
    assert outcome(other(store)) == outcome(other(None))
    assert store.hits == len(snap.loaded.entries)


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, datetime.date(2026, 1, 1), b"bytes", {1: "an int key"}],
    ids=["nan", "infinity", "date", "bytes", "int key"],
)
def test_values_json_cannot_tell_apart_are_neither_keyed_nor_stored(
    value: object, tmp_path: Path
) -> None:
    inputs = {"object": {"spec": {"x": value}}, "oldObject": None, "rendered": None}
    assert policies().verdict_key(inputs) is None
    assert policies().verdict_key({**inputs, "object": {"spec": {"x": "plain"}}}) is not None
    cache = DiskCache(tmp_path)
    cache.put("ab" * 20, {"x": value})
    assert entries(tmp_path) == []
    cache.put("ab" * 20, {"x": "plain"})
    assert cache.get("ab" * 20) == {"x": "plain"}


def test_an_entry_added_after_a_line_cut_short_is_whole(tmp_path: Path) -> None:
    """A process killed mid-write leaves half a line with no newline; the next
    process's entry must not be glued to it."""
    DiskCache(tmp_path).put("ab" * 20, {"x": 1})
    (line,) = entries(tmp_path)
    (tmp_path / ENTRIES).write_bytes(line[: len(line) // 2])
    DiskCache(tmp_path).put("cd" * 20, {"y": 2})
    DiskCache(tmp_path).put("ab" * 20, {"x": 1})
    reread = DiskCache(tmp_path)
    assert (reread.get("cd" * 20), reread.get("ab" * 20)) == ({"y": 2}, {"x": 1})
    assert len(entries(tmp_path)) == 3


def test_an_unwritable_cache_only_costs_judging_again(snap: Snapshot, tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    library = policies()
    cold = outcome(evaluate(snap, library, None))
    assert outcome(evaluate(snap, library, DiskVerdictStore(DiskCache(blocked)))) == cold
    assert blocked.read_text() == "not a folder"


# --- status documents ------------------------------------------------------------------


def _status_branch(tmp_path: Path, count: int) -> SpecRepo:
    """A spec repo whose status branch holds ``count`` documents of instance prod."""
    repo = SpecRepo(tmp_path / "repo")
    repo.commit("specs")
    git("checkout", "-q", "--orphan", "gitsync/status", cwd=repo.work)
    git("rm", "-q", "-rf", "--ignore-unmatch", ".", cwd=repo.work)
    for index in range(count):
        document = {
            "kind": "TrainingRun",
            "name": f"run-{index}",
            "namespace": "ml",
            "instance": "prod",
            "source": f"run-{index}.yaml",
            "sourceCommit": "c" * 40,
            "phase": "Succeeded",
            "message": f"done {index}",
            "conditions": [],
            "runs": [{"name": f"run-{index}-1", "phase": "Succeeded"}],
        }
        repo.write(f"status/prod/ml/TrainingRun/run-{index}.yaml", yaml.safe_dump(document))
    git("add", "-A", cwd=repo.work)
    git("commit", "-q", "-m", "statuses", cwd=repo.work)
    git("push", "-q", "origin", "gitsync/status", cwd=repo.work)
    return repo


def test_status_documents_read_through_a_damaged_cache_are_as_read_without_one(
    tmp_path: Path,
) -> None:
    repo = _status_branch(tmp_path, 4)
    source = GitSource(repo.url, branch="main", cache_dir=tmp_path / "git")

    def read(parsed: DiskCache | None) -> dict[str, object]:
        store = StatusStore(source, author=Author("g", "g@x"), instance="prod", parsed=parsed)
        return dict(store.read("gitsync/status").documents)

    cold = read(None)
    assert len(cold) == 4
    cache = tmp_path / "yaml"
    assert read(DiskCache(cache)) == cold
    assert len(entries(cache)) == 4
    warm = CountingCache(cache)
    assert read(warm) == cold
    assert warm.hits == 4

    # One entry each way a cache goes wrong: a flipped byte, a truncation, a whole
    # entry of another blob, and a whole entry whose data is no status document.
    flipped, truncated, moved, foreign = entries(cache)
    data = bytearray(flipped)
    data[-2] ^= 0x01
    damaged = [
        bytes(data),
        truncated[:60],
        key_of(moved).encode() + b" " + foreign.split(b" ", 1)[1],
        _rewrite(key_of(foreign), {"key": key_of(foreign), "value": {"kind": 1}}),
    ]
    write_entries(cache, damaged)

    assert read(DiskCache(cache)) == cold
    # Each was parsed again and stored whole: the cache reads as a fresh one.
    fresh = tmp_path / "fresh"
    read(DiskCache(fresh))
    assert usable(cache) == usable(fresh)
    assert len(usable(fresh)) == 4


def test_documents_a_store_wrote_are_known_without_parsing_and_read_as_parsed(
    tmp_path: Path,
) -> None:
    """What publish writes goes into the cache as data, under the blob it becomes: the
    next process reads every one from there, equal to parsing the branch cold, and the
    overview counts them."""
    repo = _status_branch(tmp_path, 4)
    source = GitSource(repo.url, branch="main", cache_dir=tmp_path / "git")
    cache = tmp_path / "yaml"

    def store(parsed: DiskCache | None) -> StatusStore:
        return StatusStore(source, author=Author("g", "g@x"), instance="prod", parsed=parsed)

    writer = store(None)
    read = writer.read("gitsync/status").documents.values()
    changed = [dataclasses.replace(doc, message=f"{doc.message}, again") for doc in read]
    publishing = CountingCache(cache)
    assert store(publishing).publish(changed, branch="gitsync/status", source_commit="d" * 40)
    assert publishing.asked == 0  # the overview knew each document it had just written

    cold = dict(store(None).read("gitsync/status").documents)
    assert sorted(doc.message for doc in cold.values()) == sorted(d.message for d in changed)
    warm = CountingCache(cache)
    assert dict(store(warm).read("gitsync/status").documents) == cold
    assert warm.hits == 4
    assert "| [prod](prod/README.md) | 4 | 4 Succeeded |" in repo.status_files()["status/README.md"]


# --- spec files ------------------------------------------------------------------------


def test_spec_files_read_through_a_damaged_cache_load_as_without_one(tmp_path: Path) -> None:
    repo = SpecRepo(tmp_path / "repo")
    for name in ("a", "b", "c", "d"):
        repo.write(
            f"models/{name}.yaml",
            (EXAMPLES / "models" / "fraud-detector.yaml")
            .read_text()
            .replace("fraud-detector", f"model-{name}"),
        )
    commit = repo.commit("specs")
    source = GitSource(repo.url, branch="main", cache_dir=tmp_path / "git")
    source.fetch()

    def load(documents: DiskCache | None) -> LoadResult:
        return read_snapshot(source, commit, documents=documents).loaded

    cold = load(None)
    assert len(cold.entries) == 4
    cache = tmp_path / "specs"
    assert load(DiskCache(cache)) == cold
    warm = CountingCache(cache)
    reads: list[str] = []
    read_blob = source.read_blob
    source.read_blob = lambda blob: reads.append(blob) or read_blob(blob)  # type: ignore[method-assign]
    assert load(warm) == cold
    assert warm.hits == 4
    assert reads == []  # what the cache holds, down to each document's line, is enough
    source.read_blob = read_blob  # type: ignore[method-assign]

    # A flipped byte; a whole entry of another file (its spec named otherwise); data
    # that is no spec; data of the older format, a bare list of documents, whose lines
    # were not kept.
    flipped, moved, invalid, foreign = entries(cache)
    data = bytearray(flipped)
    data[-2] ^= 0x01
    damaged = [bytes(data), key_of(moved).encode() + b" " + invalid.split(b" ", 1)[1]]
    no_spec = {"documents": [{"kind": "ModelDeployment"}], "lines": [1]}
    for line, value in ((invalid, no_spec), (foreign, [{"kind": "ModelDeployment"}])):
        damaged.append(_rewrite(key_of(line), {"key": key_of(line), "value": value}))
    write_entries(cache, damaged)
    moved_key = key_of(moved)
    assert DiskCache(cache).get(moved_key) is None

    assert load(DiskCache(cache)) == cold


# --- compaction ------------------------------------------------------------------------


def key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def spec(name: str, version: int) -> dict[str, object]:
    """About a kilobyte, as a spec file's parsed YAML is."""
    return {"name": name, "version": version, "spec": "x" * 1000}


def fill(root: Path, *, old: int, current: int) -> dict[str, dict[str, object]]:
    """``old`` entries no later process asks for (spec versions gone by) and ``current``
    ones, the first also put in an older version before: the current ones' values."""
    cache = DiskCache(root)
    cache.put(key("current-0"), spec("current-0", 0))
    for index in range(old):
        cache.put(key(f"old-{index}"), spec(f"old-{index}", 0))
    values = {key(f"current-{i}"): spec(f"current-{i}", 1) for i in range(current)}
    for name, value in values.items():
        cache.put(name, value)
    return values


def size(root: Path) -> int:
    return (root / ENTRIES).stat().st_size


def test_a_compaction_keeps_only_the_entries_used_once_the_file_is_over_its_bounds(
    tmp_path: Path,
) -> None:
    values = fill(tmp_path, old=1200, current=100)
    assert size(tmp_path) > COMPACT_FLOOR
    # A current entry damaged on disk: asked for, it is no value, so it is not kept.
    damaged = key("current-99")
    lines = [line for line in entries(tmp_path) if key_of(line) != damaged]
    last = usable(tmp_path)[damaged]
    write_entries(tmp_path, [*lines, last[:-1] + b"]"])
    before = usable(tmp_path)

    process = DiskCache(tmp_path)
    for name, value in values.items():
        assert process.get(name) == (None if name == damaged else value)
    process.put(damaged, values[damaged])  # computed again, as its user would
    new = key("new")
    process.put(new, spec("new", 0))
    assert process.compact()

    kept = [before[name] for name in values if name != damaged]
    assert sorted(entries(tmp_path)) == sorted([*kept, *entries_of(tmp_path, damaged, new)])
    assert len(entries(tmp_path)) == len(values) + 1
    assert size(tmp_path) == sum(len(line) + 1 for line in entries(tmp_path))
    assert cache_files(tmp_path) == [tmp_path / ENTRIES]

    fresh = DiskCache(tmp_path)
    assert {name: fresh.get(name) for name in values} == values
    assert fresh.get(new) == spec("new", 0)
    assert fresh.get(key("old-0")) is None
    assert not process.compact(), "once: the file it read is no longer there"


def entries_of(root: Path, *names: str) -> list[bytes]:
    return [line for line in entries(root) if key_of(line) in names]


@pytest.mark.parametrize(
    ("old", "current"), [(800, 5), (600, 700)], ids=["under 1 MiB", "under twice what is used"]
)
def test_a_file_within_the_bounds_is_left_as_it_is(tmp_path: Path, old: int, current: int) -> None:
    values = fill(tmp_path, old=old, current=current)
    before = (tmp_path / ENTRIES).read_bytes()
    assert (len(before) > COMPACT_FLOOR) == (old + current > 1000)

    process = DiskCache(tmp_path)
    assert {name: process.get(name) for name in values} == values
    assert not process.compact()
    assert (tmp_path / ENTRIES).read_bytes() == before


def test_lines_other_processes_append_around_a_compaction_are_kept(tmp_path: Path) -> None:
    values = fill(tmp_path, old=1200, current=10)
    compacting = DiskCache(tmp_path)
    assert {name: compacting.get(name) for name in values} == values
    other = DiskCache(tmp_path)
    assert other.get(key("old-0")) == spec("old-0", 0)  # it read the file too

    # After the compacting process read the file: one whole line and one cut short.
    other.put(key("between"), {"n": 1})
    with (tmp_path / ENTRIES).open("ab") as handle:
        handle.write(_line_for(key("cut"), {"n": 2})[:-5])
    assert compacting.compact()
    other.put(key("after"), {"n": 3})

    fresh = DiskCache(tmp_path)
    assert {name: fresh.get(name) for name in values} == values
    assert (fresh.get(key("between")), fresh.get(key("after"))) == ({"n": 1}, {"n": 3})
    assert fresh.get(key("old-0")) is None
    assert entries_of(tmp_path, key("cut")) == []


def test_a_process_that_read_the_file_before_another_compacted_it_leaves_it_be(
    tmp_path: Path,
) -> None:
    """Its offsets are in the replaced file: taking the new one's lines past them for
    news, it would drop most of what the other kept."""
    early = DiskCache(tmp_path)
    for index in range(600):
        early.put(key(f"early-{index}"), spec(f"early-{index}", 0))
    other = DiskCache(tmp_path)
    assert other.get(key("early-0")) == spec("early-0", 0)
    read = size(tmp_path)
    values = fill(tmp_path, old=1500, current=1000)
    compacting = DiskCache(tmp_path)
    assert {name: compacting.get(name) for name in values} == values
    assert compacting.compact()
    assert size(tmp_path) > max(read, COMPACT_FLOOR)

    before = (tmp_path / ENTRIES).read_bytes()
    assert not other.compact()
    assert (tmp_path / ENTRIES).read_bytes() == before


def _line_for(name: str, value: object) -> bytes:
    return b"\n" + _rewrite(name, {"key": name, "value": value})


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past ``limit`` bytes fail (EFBIG: Python ignores SIGXFSZ), as on a full
    disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_compaction_cut_short_leaves_the_file_whole_and_its_leftovers_unread(
    tmp_path: Path,
) -> None:
    values = fill(tmp_path, old=1200, current=100)
    before = (tmp_path / ENTRIES).read_bytes()
    process = DiskCache(tmp_path)
    assert {name: process.get(name) for name in values} == values
    with file_size_limit(4096):
        assert not process.compact()
    assert (tmp_path / ENTRIES).read_bytes() == before
    assert cache_files(tmp_path) == [tmp_path / ENTRIES]

    # What a compaction killed before its rename leaves: whole lines, never read.
    left = tmp_path / f"{ENTRIES}.4242.0badf00d.tmp"
    current = next(iter(values))
    left.write_bytes(_line_for(current, {"n": 1}) + _line_for(key("leftover"), {"n": 2}))
    fresh = DiskCache(tmp_path)
    assert (fresh.get(current), fresh.get(key("leftover"))) == (values[current], None)

    # Removed once it is old enough to be no running compaction's.
    assert not DiskCache(tmp_path).compact()
    assert left.exists()
    stale = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(left, (stale, stale))
    assert not DiskCache(tmp_path).compact()
    assert cache_files(tmp_path) == [tmp_path / ENTRIES]
    assert (tmp_path / ENTRIES).read_bytes() == before
