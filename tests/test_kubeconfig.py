"""Reaching the API server as a kubeconfig says (gitsync.clients.kubeconfig).

Every identity is checked against the real API server: it says who it took the
client for (a SelfSubjectReview), so a credential that was not sent, or sent for the
wrong user, fails the test. Exec plugins are real processes.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsync.clients import kubeconfig
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.errors import ApiForbiddenError, ApiUnavailableError, ConfigurationError

NAMESPACE = "kubeconfig-test"


def who(client: KubeClient) -> str:
    review = client.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    return str(review["status"]["userInfo"]["username"])


def connect(path: Path, **kwargs: Any) -> KubeClient:
    return KubeClient.from_kubeconfig(path, timeout=(2.0, 10.0), **kwargs)


@pytest.fixture(scope="module")
def admin(control_plane: ControlPlane) -> Iterator[KubeClient]:
    client = connect(control_plane.kubeconfig)
    yield client
    client.close()


@pytest.fixture(scope="module")
def token(admin: KubeClient) -> str:
    """A bound token of ServiceAccount kubeconfig-test/reader."""
    admin.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        field_manager="test",
    )
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "reader", "namespace": NAMESPACE},
        },
        field_manager="test",
    )
    issued = admin.request(
        "POST",
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/reader/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    return str(issued["status"]["token"])


READER = f"system:serviceaccount:{NAMESPACE}:reader"


def parts(control_plane: ControlPlane) -> dict[str, Any]:
    """The dev kubeconfig's cluster and user stanzas."""
    document = yaml.safe_load(control_plane.kubeconfig.read_text())
    return {
        "cluster": document["clusters"][0]["cluster"],
        "user": document["users"][0]["user"],
    }


def write(path: Path, *, cluster: dict[str, Any], user: dict[str, Any], current: str = "c") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "k", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                "current-context": current,
            }
        )
    )
    return path


def test_client_certificate_data(control_plane: ControlPlane, admin: KubeClient) -> None:
    assert who(admin) == "gitsync-admin"


def test_certificate_files_relative_to_the_kubeconfig(
    control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = parts(control_plane)
    folder = tmp_path / "home" / ".kube"
    (folder / "pki").mkdir(parents=True)
    for name, key in (
        ("ca.crt", given["cluster"]["certificate-authority-data"]),
        ("me.crt", given["user"]["client-certificate-data"]),
        ("me.key", given["user"]["client-key-data"]),
    ):
        (folder / "pki" / name).write_bytes(base64.b64decode(key))
    path = write(
        folder / "config",
        cluster={"server": given["cluster"]["server"], "certificate-authority": "pki/ca.crt"},
        user={"client-certificate": "pki/me.crt", "client-key": "pki/me.key"},
    )
    monkeypatch.chdir(tmp_path)  # not the kubeconfig's folder
    client = connect(path)
    assert who(client) == "gitsync-admin"
    client.close()


def test_kubeconfig_files_merge_the_first_name_winning(
    control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = parts(control_plane)
    first = tmp_path / "first"
    second = tmp_path / "second"
    # The first names the context; the second defines it. Both define cluster "k":
    # the first's is the one used, the second's would not answer.
    first.write_text(
        yaml.safe_dump(
            {"clusters": [{"name": "k", "cluster": given["cluster"]}], "current-context": "c"}
        )
    )
    write(second, cluster={"server": "https://127.0.0.1:9"}, user=given["user"], current="")
    monkeypatch.setenv(
        "KUBECONFIG", os.pathsep.join([str(first), str(tmp_path / "missing"), str(second)])
    )
    client = KubeClient.from_kubeconfig(timeout=(2.0, 10.0))
    assert who(client) == "gitsync-admin"
    client.close()


def test_bearer_token_and_impersonation(
    control_plane: ControlPlane, tmp_path: Path, token: str
) -> None:
    cluster = parts(control_plane)["cluster"]
    client = connect(write(tmp_path / "config", cluster=cluster, user={"token": token}))
    assert who(client) == READER
    client.close()
    # The admin may impersonate; the review names the impersonated user.
    admin_user = parts(control_plane)["user"]
    posing = connect(
        write(
            tmp_path / "posing",
            cluster=cluster,
            user={**admin_user, "as": "someone", "as-groups": ["team-a"]},
        )
    )
    review = posing.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    assert review["status"]["userInfo"]["username"] == "someone"
    assert "team-a" in review["status"]["userInfo"]["groups"]
    posing.close()


def test_a_token_file_is_read_again_after_a_401(
    control_plane: ControlPlane, tmp_path: Path, token: str
) -> None:
    cluster = parts(control_plane)["cluster"]
    file = tmp_path / "token"
    file.write_text("not-a-token\n")
    client = connect(write(tmp_path / "config", cluster=cluster, user={"tokenFile": "token"}))
    with pytest.raises(ApiForbiddenError, match="401"):
        who(client)
    file.write_text(token + "\n")  # rotated
    assert who(client) == READER
    client.close()


def test_a_token_file_is_read_again_each_period(
    control_plane: ControlPlane, tmp_path: Path, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = parts(control_plane)["cluster"]
    file = tmp_path / "token"
    file.write_text(token)
    client = connect(write(tmp_path / "config", cluster=cluster, user={"tokenFile": "token"}))
    assert who(client) == READER
    file.write_text("revoked")
    assert who(client) == READER  # within the period: the token read before
    monkeypatch.setattr(kubeconfig, "TOKEN_FILE_PERIOD", 0.0)
    with pytest.raises(ApiForbiddenError, match="401"):
        who(client)
    client.close()


PLUGIN = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    with open({calls!r}, "a") as log:
        log.write(os.environ["KUBERNETES_EXEC_INFO"] + "\\n")
    mode = os.environ.get("PLUGIN_MODE", "ok")
    if mode == "fail":
        print("login expired: run sso login", file=sys.stderr)
        sys.exit(3)
    if mode == "garbage":
        print("hello")
        sys.exit(0)
    print(json.dumps({{
        "apiVersion": sys.argv[1],
        "kind": "ExecCredential",
        "status": {{"token": {token!r}, "expirationTimestamp": sys.argv[2]}},
    }}))
    """
)


@pytest.fixture
def plugin(tmp_path: Path, token: str) -> tuple[Path, Path]:
    calls = tmp_path / "calls"
    script = tmp_path / "bin" / "token-plugin"
    script.parent.mkdir()
    script.write_text(PLUGIN.format(python=sys.executable, calls=str(calls), token=token))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, calls


def exec_user(version: str, expires: str, **extra: Any) -> dict[str, Any]:
    return {
        "exec": {
            "apiVersion": version,
            "command": "bin/token-plugin",  # relative to the kubeconfig's folder
            "args": [version, expires],
            "interactiveMode": "Never",
            **extra,
        }
    }


@pytest.mark.parametrize(
    "version", ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"]
)
def test_an_exec_plugin_runs_once_until_its_token_expires(
    control_plane: ControlPlane, tmp_path: Path, plugin: tuple[Path, Path], version: str
) -> None:
    _, calls = plugin
    cluster = parts(control_plane)["cluster"]
    lasting = connect(
        write(
            tmp_path / "config",
            cluster=cluster,
            user=exec_user(version, "2999-01-01T00:00:00Z", provideClusterInfo=True),
        )
    )
    assert who(lasting) == READER
    assert who(lasting) == READER
    infos = [json.loads(line) for line in calls.read_text().splitlines()]
    assert len(infos) == 1
    assert infos[0]["apiVersion"] == version
    assert infos[0]["spec"]["interactive"] is False
    assert infos[0]["spec"]["cluster"]["server"] == cluster["server"]
    lasting.close()

    expired = connect(
        write(
            tmp_path / "expired", cluster=cluster, user=exec_user(version, "2000-01-01T00:00:00Z")
        )
    )
    assert who(expired) == READER
    assert who(expired) == READER
    infos = [json.loads(line) for line in calls.read_text().splitlines()]
    assert len(infos) == 3  # run again for each request: its token had expired
    assert "cluster" not in infos[-1]["spec"]  # no provideClusterInfo
    expired.close()


@pytest.mark.parametrize(
    ("mode", "error", "message"),
    [
        ("fail", ApiUnavailableError, "exited 3: login expired: run sso login"),
        ("garbage", ConfigurationError, "its output is not JSON"),
    ],
)
def test_an_exec_plugin_that_fails_says_why(
    control_plane: ControlPlane,
    tmp_path: Path,
    plugin: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    error: type[Exception],
    message: str,
) -> None:
    monkeypatch.setenv("PLUGIN_MODE", mode)
    cluster = parts(control_plane)["cluster"]
    version = "client.authentication.k8s.io/v1"
    client = connect(
        write(tmp_path / "config", cluster=cluster, user=exec_user(version, "2999-01-01T00:00:00Z"))
    )
    with pytest.raises(error, match=message):
        who(client)
    client.close()


def test_tls_server_name_and_an_unknown_ca(control_plane: ControlPlane, tmp_path: Path) -> None:
    given = parts(control_plane)
    # The serving certificate names "kubernetes" too, not "elsewhere".
    named = connect(
        write(
            tmp_path / "named",
            cluster={**given["cluster"], "tls-server-name": "kubernetes"},
            user=given["user"],
        )
    )
    assert who(named) == "gitsync-admin"
    named.close()
    wrong = connect(
        write(
            tmp_path / "wrong",
            cluster={**given["cluster"], "tls-server-name": "elsewhere"},
            user=given["user"],
        )
    )
    with pytest.raises(ApiUnavailableError, match="certificate"):
        who(wrong)
    wrong.close()
    # A CA that did not sign the server's certificate: refused, unless told not to check.
    other_ca = base64.b64encode(
        (control_plane.folder / "pki" / "apiserver.crt").read_bytes()
    ).decode()
    cluster = {"server": given["cluster"]["server"], "certificate-authority-data": other_ca}
    unknown = connect(write(tmp_path / "unknown", cluster=cluster, user=given["user"]))
    with pytest.raises(ApiUnavailableError, match="certificate"):
        who(unknown)
    unknown.close()
    insecure = connect(
        write(
            tmp_path / "insecure",
            cluster={"server": given["cluster"]["server"], "insecure-skip-tls-verify": True},
            user=given["user"],
        )
    )
    assert who(insecure) == "gitsync-admin"
    insecure.close()


SERVER = {"server": "https://127.0.0.1:6443"}


@pytest.mark.parametrize(
    ("user", "cluster", "message"),
    [
        (
            {"auth-provider": {"name": "gcp"}},
            SERVER,
            "auth-provider 'gcp' is not supported; use an exec plugin (gke-gcloud-auth-plugin)",
        ),
        (
            {"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}},
            SERVER,
            None,  # refused when it first runs, see below
        ),
        ({"client-certificate-data": "bm90IGEgY2VydA=="}, SERVER, "go together"),
        ({"token": "t"}, {"server": "127.0.0.1:6443"}, "is no http(s) URL"),
        ({"token": "t"}, {"server": "https://x", "certificate-authority-data": "%%"}, "not base64"),
        ({"token": "t"}, {"certificate-authority-data": "eA=="}, "server is missing"),
        ({"as-groups": ["a"]}, SERVER, "as-groups needs as"),
        ({"as": "a", "as-groups": ["a", "b"]}, SERVER, "more than one group"),
        (
            {"token": "t"},
            {"server": "https://x", "proxy-url": "socks5://p:1080"},
            "http(s) proxies",
        ),
    ],
)
def test_what_cannot_be_used_is_refused_naming_the_file(
    tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any], message: str | None
) -> None:
    path = write(tmp_path / "config", cluster=cluster, user=user)
    if message is None:
        client = connect(path)
        with pytest.raises(ConfigurationError, match=r"apiVersion .* is not supported"):
            client.request("GET", "/version")
        return
    with pytest.raises(ConfigurationError) as raised:
        kubeconfig.from_kubeconfig(path)
    assert str(raised.value).startswith(f"kubeconfig {path}: ")
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update({"current-context": "nope"}), "context 'nope' is not defined"),
        (lambda d: d.update({"current-context": ""}), "no current-context"),
        (lambda d: d["contexts"][0]["context"].update(cluster="gone"), "cluster 'gone'"),
        (lambda d: d["contexts"][0]["context"].update(user="gone"), "user 'gone'"),
        (lambda d: d.update({"clusters": [{"cluster": {}}]}), "has no name"),
    ],
)
def test_a_kubeconfig_that_does_not_hold_together(tmp_path: Path, edit: Any, message: str) -> None:
    path = write(tmp_path / "config", cluster=SERVER, user={"token": "t"})
    document = yaml.safe_load(path.read_text())
    edit(document)
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigurationError, match=message):
        kubeconfig.from_kubeconfig(path)


def test_a_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no such file"):
        kubeconfig.from_kubeconfig(tmp_path / "absent")
    broken = tmp_path / "broken"
    broken.write_text("clusters: [")
    with pytest.raises(ConfigurationError, match="not YAML"):
        kubeconfig.from_kubeconfig(broken)


def test_no_credential_stays_on_disk(
    control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client key goes through a private temporary file, gone once loaded."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)
    client = connect(control_plane.kubeconfig)
    assert who(client) == "gitsync-admin"
    client.close()
    assert list(scratch.iterdir()) == []


def test_in_cluster_needs_its_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigurationError, match="KUBERNETES_SERVICE_HOST"):
        kubeconfig.in_cluster(tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(ConfigurationError, match="token does not exist"):
        kubeconfig.in_cluster(tmp_path)
    (tmp_path / "token").write_text(uuid.uuid4().hex)
    (tmp_path / "ca.crt").write_bytes(b"")
    with pytest.raises(ConfigurationError, match="TLS"):
        kubeconfig.in_cluster(tmp_path)  # an empty CA file holds no certificate
