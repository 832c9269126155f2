"""When an InferenceService's new spec reached the API server, seen from outside.

A bench that times "until applied" by the process under test's own account measures
its own bookkeeping, and one that polls GETs loads the API server it is timing (200
requests a second on 2 cores) and rounds up to its poll. Here a process of its own
LISTs the namespace's InferenceServices, then watches them from that list's
resourceVersion, so no change after the LIST is missed however late the watch
connects. It prints, for each object whose predictor storageUri differs from the last
it saw (a new object included; the controllers' status writes are left out), the
CLOCK_MONOTONIC time the event arrived: the same clock as ``time.monotonic()`` in the
bench, so the two can be subtracted. The watch event comes after etcd has the write,
so each figure is an upper bound on when the object was applied.

    watch = AppliedWatch(kubeconfig, namespace="bench")  # before the push
    ...
    applied_at = watch.applied("model-00007", "s3://models/m7/v2", timeout=30)

Run as a script, it is that watching process.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from gitsync.clients.kube import KubeClient
from gitsync.errors import WatchExpiredError

ISVC = ("serving.kserve.io/v1beta1", "InferenceService")


def storage_uri(obj: dict[str, Any]) -> str | None:
    model = ((obj.get("spec") or {}).get("predictor") or {}).get("model") or {}
    uri = model.get("storageUri")
    return None if uri is None else str(uri)


class AppliedWatch:
    """A watching process, and what it has reported so far."""

    def __init__(self, kubeconfig: Path, *, namespace: str, timeout: float = 60.0) -> None:
        self._process = subprocess.Popen(
            [sys.executable, __file__, str(kubeconfig), namespace],
            stdout=subprocess.PIPE,
        )
        assert self._process.stdout is not None
        self._stdout = self._process.stdout
        self._seen: dict[tuple[str, str | None], float] = {}
        self._changed = threading.Condition()
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout):
            self.close()
            raise SystemExit("the watching process did not list in time")

    def _read(self) -> None:
        for line in self._stdout:
            if line.strip() == b"ready":
                self._ready.set()
                continue
            event = orjson.loads(line)
            with self._changed:
                self._seen.setdefault((event["name"], event["uri"]), event["t"])
                self._changed.notify_all()

    def applied(self, name: str, uri: str | None, *, timeout: float) -> float:
        """The monotonic time ``name`` was first seen with ``uri``, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (name, uri) not in self._seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"{name} with {uri} was not applied in {timeout} s")
                self._changed.wait(left)
            return self._seen[name, uri]

    def close(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


def watch(kubeconfig: Path, namespace: str) -> None:
    kube = KubeClient.from_kubeconfig(kubeconfig)
    known: dict[str, str | None] = {}

    def relist() -> str:
        listed = kube.list(*ISVC, namespace=namespace)
        for item in listed.get("items") or []:
            known[item["metadata"]["name"]] = storage_uri(item)
        return str(listed["metadata"]["resourceVersion"])

    version = relist()
    sys.stdout.buffer.write(b"ready\n")
    sys.stdout.buffer.flush()
    while True:
        try:
            for event in kube.watch(*ISVC, resource_version=version, namespace=namespace):
                arrived = time.monotonic()
                obj = event.object
                version = str(obj["metadata"]["resourceVersion"])
                if event.type not in {"ADDED", "MODIFIED"}:
                    continue
                name, uri = obj["metadata"]["name"], storage_uri(obj)
                if name in known and known[name] == uri:
                    continue
                known[name] = uri
                line = orjson.dumps({"t": arrived, "name": name, "uri": uri})
                sys.stdout.buffer.write(line + b"\n")
                sys.stdout.buffer.flush()
        except WatchExpiredError:
            version = relist()


if __name__ == "__main__":
    watch(Path(sys.argv[1]), sys.argv[2])
