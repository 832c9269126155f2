"""gitsync as users get it: a wheel, installed into a fresh virtualenv.

A source checkout hides packaging mistakes (the shipped policies, read from the
repository's ``policies/`` folder, went missing from the wheel, so an installed
gitsync could not validate anything). These tests build the wheel, install it with
its dependencies into a new venv, and run the installed ``gitsync`` there, checking
that it is the installed copy, not the source tree, that runs. The install resolves
the dependencies through pip (from its cache when warm: about 25 s).
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import gitsync
import gitsync.policy

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(path.name for path in (ROOT / "policies").glob("*.yaml"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("gitsync-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh venv holding the wheel and its dependencies."""
    env = tmp_path_factory.mktemp("venv") / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )
    return env / "bin"


def test_wheel_holds_the_shipped_policies_and_the_typing_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert SHIPPED, "no shipped policies found under policies/"
    assert {f"gitsync/policy/shipped/{name}" for name in SHIPPED} <= names
    assert "gitsync/py.typed" in names
    assert {
        "gitsync/dashboard/templates/overview.html",
        "gitsync/dashboard/static/dashboard.js",
        "gitsync/dashboard/static/dashboard.css",
    } <= names
    assert not any(name.startswith(("policies/", "tests/")) for name in names)


def test_the_installed_gitsync_runs_from_the_venv(installed: Path) -> None:
    where = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            "import gitsync, gitsync.policy as p; print(gitsync.__file__); print(p.LIBRARY_DIR)",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=installed,  # not the checkout, whose gitsync/ a cwd on sys.path would find
    ).stdout.split()
    venv_root = installed.parent.resolve()
    assert all(Path(path).resolve().is_relative_to(venv_root) for path in where), where


def test_the_installed_gitsync_validates_the_examples(installed: Path) -> None:
    result = subprocess.run(
        [str(installed / "gitsync"), "validate", str(ROOT / "examples" / "repo")],
        capture_output=True,
        text=True,
        check=False,
        cwd=installed,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "policies: valid" in output
    # The examples replace a shipped policy: the warning names the installed copy.
    assert f"replaces the shipped one from {installed.parent / 'lib'}" in output


def test_the_installed_gitsync_writes_nothing_into_its_venv(
    installed: Path, tmp_path: Path
) -> None:
    # The image runs it on a read-only root filesystem: every module was compiled at
    # install time, and a run leaves the venv as it was, even when allowed bytecode.
    venv_root = installed.parent
    before = {p: p.stat().st_mtime_ns for p in venv_root.rglob("*")}
    result = subprocess.run(
        [str(installed / "gitsync"), "validate", str(ROOT / "examples" / "repo")],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={"PATH": str(installed), "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    after = {p: p.stat().st_mtime_ns for p in venv_root.rglob("*")}
    assert after == before, sorted(set(after) ^ set(before))[:10]


def test_the_containerfile_installs_the_wheel_as_these_tests_do() -> None:
    # The same two steps as the `installed` fixture, then a non-root user.
    text = (ROOT / "Containerfile").read_text()
    steps = " ".join(text.split())
    assert "RUN python3 -m venv /opt/gitsync" in steps
    assert "/opt/gitsync/bin/pip install --no-cache-dir --disable-pip-version-check" in steps
    assert "/tmp/dist/gitsync-*.whl" in steps
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users, "the image must not run as root"
    assert not users[-1].startswith(("0", "root"))


_SERVE_ONE_PAGE = """
from gitsync.board import BoardData
from gitsync.dashboard import Dashboard
class Empty:
    def current(self):
        return BoardData(status_commit=None, spec_commit=None, documents={})
app = Dashboard(Empty())
page = app.handle(method="GET", path="/", query="", headers={})
script = app.handle(method="GET", path="/static/dashboard.js", query="", headers={})
print(page.status, script.status, b"No status branch yet" in page.body)
"""


def test_the_installed_dashboard_has_its_templates_and_files(installed: Path) -> None:
    result = subprocess.run(
        [str(installed / "python"), "-c", _SERVE_ONE_PAGE],
        capture_output=True,
        text=True,
        check=False,
        cwd=installed,
    )
    assert result.stdout.split() == ["200", "200", "True"], result.stderr


def test_public_api_of_gitsync() -> None:
    assert gitsync.__all__ == ["__version__"]


def test_public_api_of_gitsync_policy() -> None:
    assert gitsync.policy.__all__ == [
        "LIBRARY_DIR",
        "LabelSelector",
        "LabelSelectorRequirement",
        "MatchCondition",
        "Policy",
        "PolicyDocument",
        "PolicyMatch",
        "PolicyResult",
        "PolicySet",
        "PolicySeverity",
        "ProgramStore",
        "Quantity",
        "QuantityError",
        "Validation",
        "Variable",
        "VerdictMemo",
        "VerdictStore",
        "Verdicts",
        "Violation",
        "enforce",
        "entry_object",
        "load_library",
        "load_policies",
        "load_policy_dirs",
        "verdict_lines",
    ]
    assert all(hasattr(gitsync.policy, name) for name in gitsync.policy.__all__)
