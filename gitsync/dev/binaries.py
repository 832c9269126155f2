"""Find or build the kube-apiserver and etcd binaries of the local control plane.

No registry we can reach serves a prebuilt kube-apiserver, so gitsync builds one from
Go modules, the way envtest-style harnesses run them. The release is pinned by the
tools module shipped next to this file (``kube/go.mod``); the binaries are cached
outside the repository, keyed by that release, and built only when missing.

``GITSYNC_KUBE_BIN`` or ``KUBEBUILDER_ASSETS`` (the envtest convention) may point to a
folder that already holds ``kube-apiserver`` and ``etcd``; it is then used as is.

kubectl is built only on request (:func:`ensure_kubectl`): nothing but the peer
benchmark runs it, and the tests should not wait a minute more for it. It comes from
the same tools module and ldflags, so the benchmark compares against the kubectl of
the very release the API server is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from gitsync.errors import BuildError, ConfigurationError

__all__ = ["Binaries", "Release", "ensure_binaries", "ensure_kubectl", "pinned_release"]

TOOLS_MODULE = Path(__file__).with_name("kube")
KUBE_PACKAGE = "k8s.io/kubernetes/cmd/kube-apiserver"
ETCD_PACKAGE = "go.etcd.io/etcd/server/v3"
KUBECTL_PACKAGE = "k8s.io/kubernetes/cmd/kubectl"
BINARY_NAMES = ("kube-apiserver", "etcd")


@dataclass(frozen=True, slots=True)
class Release:
    """The Kubernetes and etcd versions the tools module pins."""

    kubernetes: str
    etcd: str

    @property
    def cache_key(self) -> str:
        return f"{self.kubernetes}-etcd{self.etcd}"


@dataclass(frozen=True, slots=True)
class Binaries:
    """Paths of a usable kube-apiserver and etcd."""

    kube_apiserver: Path
    etcd: Path


def pinned_release(go_mod: Path = TOOLS_MODULE / "go.mod") -> Release:
    """Read the pinned versions from the tools module, the single source of truth."""
    text = go_mod.read_text(encoding="utf-8")

    def version_of(module: str) -> str:
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.M)
        if match is None:
            raise ConfigurationError(f"{go_mod}: no version of {module} pinned")
        return match.group(1)

    return Release(kubernetes=version_of("k8s.io/kubernetes"), etcd=version_of(ETCD_PACKAGE))


def cache_root() -> Path:
    if explicit := os.environ.get("GITSYNC_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gitsync"


def _binaries_in(folder: Path) -> Binaries | None:
    found = Binaries(kube_apiserver=folder / "kube-apiserver", etcd=folder / "etcd")
    if all(os.access(p, os.X_OK) for p in (found.kube_apiserver, found.etcd)):
        return found
    return None


def ensure_binaries(*, progress: Callable[[str], None] | None = None) -> Binaries:
    """Return usable binaries: from the environment, from the cache, or freshly built."""
    for variable in ("GITSYNC_KUBE_BIN", "KUBEBUILDER_ASSETS"):
        if folder := os.environ.get(variable):
            found = _binaries_in(Path(folder))
            if found is None:
                raise ConfigurationError(
                    f"{variable}={folder} does not hold executable kube-apiserver and etcd"
                )
            return found

    release = pinned_release()
    target = cache_root() / "kube" / release.cache_key
    if (found := _binaries_in(target)) is not None:
        return found
    say = progress or _stderr_progress
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(target.parent / f"{release.cache_key}.lock"):
        # Another process may have finished the build while we waited for the lock.
        if (found := _binaries_in(target)) is not None:
            return found
        _build(release, target, say, {"kube-apiserver": KUBE_PACKAGE, "etcd": ETCD_PACKAGE})
    found = _binaries_in(target)
    if found is None:  # pragma: no cover - _build either fills target or raises
        raise BuildError(f"build finished but {target} lacks the binaries")
    return found


def ensure_kubectl(*, progress: Callable[[str], None] | None = None) -> Path:
    """Return a kubectl of the pinned release, from the cache or freshly built."""
    release = pinned_release()
    # Its own folder, so the apiserver's folder stays complete-or-absent (see _build).
    target = cache_root() / "kube" / f"{release.cache_key}-kubectl"
    binary = target / "kubectl"
    if not os.access(binary, os.X_OK):
        target.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(target.parent / f"{release.cache_key}-kubectl.lock"):
            if not os.access(binary, os.X_OK):
                _build(release, target, progress or _stderr_progress, {"kubectl": KUBECTL_PACKAGE})
    return binary


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _go_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(CGO_ENABLED="0", GOTOOLCHAIN="local")
    return env


def _ldflags(release: Release) -> str:
    major, minor, _ = release.kubernetes.removeprefix("v").split(".", 2)
    stamp = "k8s.io/component-base/version"
    return " ".join(
        [
            "-s",
            "-w",
            f"-X {stamp}.gitVersion={release.kubernetes}",
            f"-X {stamp}.gitMajor={major}",
            f"-X {stamp}.gitMinor={minor}",
            f"-X {stamp}.gitTreeState=clean",
            f"-X go.etcd.io/etcd/api/v3/version.GitSHA={release.etcd}",
        ]
    )


def _build(
    release: Release, target: Path, say: Callable[[str], None], packages: Mapping[str, str]
) -> None:
    """Build each program of ``packages`` (name: Go package) into ``target``."""
    if shutil.which("go") is None:
        names = " and ".join(packages)
        raise BuildError(f"the Go toolchain is needed to build {names}: install go")
    env = _go_environment()
    # Build into a scratch folder and rename it into place, so an interrupted build
    # never leaves a half-written binary that a later run would take for a good one.
    scratch = Path(tempfile.mkdtemp(prefix=f".{release.cache_key}-", dir=target.parent))
    try:
        for name, package in packages.items():
            _build_one(
                name=name,
                package=package,
                output=scratch / name,
                ldflags=_ldflags(release),
                env=env,
                say=say,
            )
        scratch.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    say(f"cached {release.kubernetes} binaries in {target}")


def _build_one(
    *,
    name: str,
    package: str,
    output: Path,
    ldflags: str,
    env: dict[str, str],
    say: Callable[[str], None],
) -> None:
    total = _count_packages(package, env)
    say(f"building {name} from Go modules ({total} packages; a cold build takes minutes)")
    started = time.monotonic()
    command = ["go", "build", "-v", "-o", str(output), "-ldflags", ldflags, package]
    with subprocess.Popen(
        command,
        cwd=TOOLS_MODULE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        compiled = 0
        last_report = 0.0
        tail: list[str] = []
        for raw_line in proc.stdout or ():
            line = raw_line.rstrip()
            tail = [*tail[-40:], line]
            if line and " " not in line:  # `go build -v` prints one package path a line
                compiled += 1
            now = time.monotonic()
            if now - last_report >= 5:
                last_report = now
                say(f"  {name}: {compiled}/{total} packages compiled, {now - started:.0f}s")
        code = proc.wait()
    if code != 0:
        raise BuildError(f"go build {package} failed (exit {code}):\n" + "\n".join(tail))
    say(f"built {name} in {time.monotonic() - started:.0f}s")


def _count_packages(package: str, env: dict[str, str]) -> int:
    result = subprocess.run(
        ["go", "list", "-deps", package],
        cwd=TOOLS_MODULE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(f"go list {package} failed:\n{result.stderr[-4000:]}")
    return len(result.stdout.split())
