"""A spec repository for tests: a bare remote and a work tree that pushes to it."""

from __future__ import annotations

import subprocess
from pathlib import Path

_ENV = {
    "GIT_AUTHOR_NAME": "Dana Scientist",
    "GIT_AUTHOR_EMAIL": "dana@example.com",
    "GIT_COMMITTER_NAME": "Dana Scientist",
    "GIT_COMMITTER_EMAIL": "dana@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "PATH": "/usr/bin:/bin:/usr/local/bin",
    "HOME": "/tmp",
}


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=_ENV, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout.strip()


class SpecRepo:
    """``remote`` is a bare repository; ``work`` a clone where tests edit and push."""

    def __init__(self, root: Path) -> None:
        self.remote = root / "remote.git"
        self.work = root / "work"
        self.remote.mkdir(parents=True)
        git("init", "--bare", "--initial-branch=main", cwd=self.remote)
        self.work.mkdir()
        git("init", "--initial-branch=main", cwd=self.work)
        git("remote", "add", "origin", str(self.remote), cwd=self.work)

    @property
    def url(self) -> str:
        return self.remote.as_uri()

    def write(self, path: str, content: str | bytes) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)

    def delete(self, path: str) -> None:
        (self.work / path).unlink()

    def commit(self, message: str) -> str:
        git("add", "-A", cwd=self.work)
        git("commit", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "origin", "main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def status_files(self, branch: str = "gitsync/status") -> dict[str, str]:
        """The files on the status branch of the remote, by path."""
        names = git("ls-tree", "-r", "--name-only", branch, cwd=self.remote).splitlines()
        return {name: git("show", f"{branch}:{name}", cwd=self.remote) for name in names}

    def status_document(self, namespace: str, kind: str, name: str) -> str:
        """The one status document of a spec, in whichever instance's folder it lies."""
        found = [
            text
            for path, text in self.status_files().items()
            if path.endswith(f"/{namespace}/{kind}/{name}.yaml") and path.count("/") == 4
        ]
        assert len(found) == 1, f"{len(found)} documents of {kind} {namespace}/{name}"
        return found[0]

    def log(self, branch: str) -> list[str]:
        return git("log", "--format=%H %s", branch, cwd=self.remote).splitlines()
