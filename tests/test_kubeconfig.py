"""Reaching the API server as a kubeconfig says (gitsync.clients.kubeconfig).

Every identity is checked against the real API server: it says who it took the
client for (a SelfSubjectReview), so a credential that was not sent, or sent for the
wrong user, fails the test. Exec plugins are real processes.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import socket
import socketserver
import stat
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitsync.clients import kubeconfig
from gitsync.clients.kube import KubeClient
from gitsync.dev.controlplane import ControlPlane
from gitsync.dev.pki import ensure_pki
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
    other_ca = base64.b64encode(ensure_pki(tmp_path / "other").ca.pair.cert_pem).decode()
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
            "apiVersion 'client.authentication.k8s.io/v1alpha1' is not supported",
        ),
        (
            {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": "x",
                    "interactiveMode": "Always",
                }
            },
            SERVER,
            "interactiveMode Always needs a terminal",
        ),
        ({"token": "t", "username": "u", "password": "p"}, SERVER, "more than one way"),
        ({"token": "two\nlines"}, SERVER, "the token holds spaces"),
        (
            {"token": "t"},
            {**SERVER, "insecure-skip-tls-verify": True, "certificate-authority-data": "eA=="},
            "a certificate authority and insecure-skip-tls-verify together",
        ),
        ({"tokenFile": "absent"}, SERVER, "cannot be read, or is empty"),
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
    tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any], message: str
) -> None:
    path = write(tmp_path / "config", cluster=cluster, user=user)
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


# --- what client-go does beyond reading the fields (the review's list) ------------------


def test_no_credential_goes_to_a_server_over_plain_http(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config",
        cluster={"server": "http://127.0.0.1:8080"},
        user={"token": "secret", "as": "someone"},
    )
    endpoint = kubeconfig.from_kubeconfig(path)
    assert endpoint.ssl_context is None
    assert endpoint.credentials.headers() == {}


@pytest.mark.parametrize(
    "user",
    [{"token": "from-the-file"}, "certificate"],
    ids=["token", "client certificate"],
)
def test_an_exec_plugin_is_not_run_for_a_user_with_another_login(
    control_plane: ControlPlane, tmp_path: Path, user: Any
) -> None:
    given = parts(control_plane)
    login = given["user"] if user == "certificate" else user
    plugin = {"apiVersion": "client.authentication.k8s.io/v1", "command": "/no/such/plugin"}
    path = write(tmp_path / "config", cluster=given["cluster"], user={**login, "exec": plugin})
    headers = kubeconfig.from_kubeconfig(path).credentials.headers()  # the plugin would fail
    assert headers == ({} if user == "certificate" else {"Authorization": "Bearer from-the-file"})


def test_a_token_file_behind_a_secret_mount_follows_its_updates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kubelet mounts a Secret as links into a dated folder it swaps at each update:
    relative paths go through the links, not into the folder of the day."""
    mount = tmp_path / "mount"
    first = mount / "..2026_12_01_a"
    first.mkdir(parents=True)
    write(first / "config", cluster=SERVER, user={"tokenFile": "token"})
    (first / "token").write_text("first")
    (mount / "..data").symlink_to(first.name)
    for name in ("config", "token"):
        (mount / name).symlink_to(f"..data/{name}")
    endpoint = kubeconfig.from_kubeconfig(mount / "config")
    assert endpoint.credentials.headers()["Authorization"] == "Bearer first"
    second = mount / "..2026_12_01_b"
    second.mkdir()
    (second / "token").write_text("second")
    (second / "config").write_text((first / "config").read_text())
    (mount / "..data_tmp").symlink_to(second.name)
    (mount / "..data_tmp").rename(mount / "..data")
    for file in first.iterdir():
        file.unlink()
    first.rmdir()
    monkeypatch.setattr(kubeconfig, "TOKEN_FILE_PERIOD", 0.0)
    assert endpoint.credentials.headers()["Authorization"] == "Bearer second"


def test_a_token_file_wins_over_token_and_keeps_its_last_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "token"
    file.write_text("from-the-file\n")
    path = write(
        tmp_path / "config", cluster=SERVER, user={"token": "inline", "tokenFile": "token"}
    )
    credentials = kubeconfig.from_kubeconfig(path).credentials
    assert credentials.headers()["Authorization"] == "Bearer from-the-file"
    monkeypatch.setattr(kubeconfig, "TOKEN_FILE_PERIOD", 0.0)
    for rotating in ("", "   \n"):  # emptied mid-rotation: the last token stays
        file.write_text(rotating)
        assert credentials.headers()["Authorization"] == "Bearer from-the-file"
    file.unlink()
    assert credentials.headers()["Authorization"] == "Bearer from-the-file"
    # Without a file to read at start, the inline token is the one used.
    assert kubeconfig.from_kubeconfig(path).credentials.headers() == {
        "Authorization": "Bearer inline"
    }


@pytest.mark.parametrize(
    ("server", "environment", "proxy"),
    [
        ("https://api.example.com:6443", {"HTTPS_PROXY": "http://p:3128"}, "http://p:3128"),
        ("https://api.example.com:6443", {"https_proxy": "p:3128"}, "http://p:3128"),
        ("https://api.example.com:6443", {"HTTP_PROXY": "http://p:3128"}, None),
        ("http://api.example.com:8080", {"HTTP_PROXY": "http://p:3128"}, "http://p:3128"),
        (
            "https://api.example.com:6443",
            {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "other.org,.example.com"},
            None,
        ),
        ("https://10.1.2.3:6443", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "10.0.0.0/8"}, None),
        (
            "https://10.1.2.3:6443",
            {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "11.0.0.0/8"},
            "http://p:3128",
        ),
        ("https://127.0.0.1:6443", {"HTTPS_PROXY": "http://p:3128"}, None),
        ("https://localhost:6443", {"HTTPS_PROXY": "http://p:3128"}, None),
    ],
)
def test_the_proxy_comes_from_the_environment_as_in_go(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: str,
    environment: dict[str, str],
    proxy: str | None,
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    path = write(tmp_path / "config", cluster={"server": server}, user={})
    assert kubeconfig.from_kubeconfig(path).proxy == proxy


def test_a_proxy_url_with_credentials_sends_them_as_proxy_authorization(tmp_path: Path) -> None:
    cluster = {"server": "https://api.example.com", "proxy-url": "http://me:p%40ss@p:3128"}
    endpoint = kubeconfig.from_kubeconfig(write(tmp_path / "config", cluster=cluster, user={}))
    assert endpoint.proxy == "http://p:3128"
    expected = "Basic " + base64.b64encode(b"me:p@ss").decode()
    assert endpoint.proxy_headers == {"Proxy-Authorization": expected}


class _ConnectProxy:
    """An http proxy that tunnels CONNECT to 127.0.0.1 after checking credentials."""

    def __init__(self, credentials: str) -> None:
        self.tunnelled: list[str] = []
        expected = "Basic " + base64.b64encode(credentials.encode()).decode()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_CONNECT(self) -> None:
                if self.headers.get("Proxy-Authorization") != expected:
                    self.send_response(407)
                    self.end_headers()
                    return
                host, _, port = self.path.rpartition(":")
                upstream = socket.create_connection((host, int(port)))
                outer.tunnelled.append(self.path)
                self.send_response(200)
                self.end_headers()
                sockets = [self.connection, upstream]

                def pump(source: socket.socket, sink: socket.socket) -> None:
                    try:
                        while data := source.recv(65536):
                            sink.sendall(data)
                    except OSError:
                        pass
                    finally:
                        for each in sockets:
                            with contextlib.suppress(OSError):
                                each.shutdown(socket.SHUT_RDWR)

                other = threading.Thread(target=pump, args=(upstream, self.connection))
                other.start()
                pump(self.connection, upstream)
                other.join()

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url_port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_through_an_authenticating_proxy(control_plane: ControlPlane, tmp_path: Path) -> None:
    given = parts(control_plane)
    proxy = _ConnectProxy("me:secret")
    try:
        cluster = {**given["cluster"], "proxy-url": f"http://me:secret@127.0.0.1:{proxy.url_port}"}
        client = connect(write(tmp_path / "config", cluster=cluster, user=given["user"]))
        assert who(client) == "gitsync-admin"
        client.close()
        assert proxy.tunnelled and proxy.tunnelled[0].startswith("127.0.0.1:")
        wrong = {**cluster, "proxy-url": f"http://me:wrong@127.0.0.1:{proxy.url_port}"}
        refused = connect(write(tmp_path / "wrong", cluster=wrong, user=given["user"]))
        with pytest.raises(ApiUnavailableError, match="407"):
            who(refused)
        refused.close()
    finally:
        proxy.close()


def test_ca_data_wrapped_in_lines_is_read_as_kubectl_reads_it(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    given = parts(control_plane)
    data = given["cluster"]["certificate-authority-data"]
    wrapped = "\n".join(data[i : i + 64] for i in range(0, len(data), 64))
    cluster = {**given["cluster"], "certificate-authority-data": wrapped}
    client = connect(write(tmp_path / "config", cluster=cluster, user=given["user"]))
    assert who(client) == "gitsync-admin"
    client.close()


TOKEN_FROM_FILE = textwrap.dedent(
    """\
    #!{python}
    import json, sys, pathlib
    with open({calls!r}, "a") as log:
        log.write("run\\n")
    mode = pathlib.Path({mode!r}).read_text()
    if mode == "fail":
        print("printed-secret-token")
        print("the identity provider is down", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({{
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {{"token": pathlib.Path({token!r}).read_text().strip()}},
    }}))
    """
)


@pytest.fixture
def switchable(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """A plugin printing the token in a file, or failing, as another file says."""
    calls, mode, token_file = tmp_path / "calls", tmp_path / "mode", tmp_path / "token.txt"
    mode.write_text("ok")
    script = tmp_path / "plugin"
    script.write_text(
        TOKEN_FROM_FILE.format(
            python=sys.executable, calls=str(calls), mode=str(mode), token=str(token_file)
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    config = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(script)}}
    return write(tmp_path / "kubeconfig", cluster=SERVER, user=config), calls, mode, token_file


def test_a_401_runs_the_plugin_again_once_for_every_thread(
    control_plane: ControlPlane, switchable: tuple[Path, Path, Path, Path], token: str
) -> None:
    path, calls, _, token_file = switchable
    document = yaml.safe_load(path.read_text())
    document["clusters"][0]["cluster"] = parts(control_plane)["cluster"]
    path.write_text(yaml.safe_dump(document))
    token_file.write_text("revoked")
    client = connect(path, concurrency=8)
    with pytest.raises(ApiForbiddenError, match="401"):
        who(client)
    token_file.write_text(token)
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: who(client), range(16))) == {READER}
    # Once for the revoked token, once after the 401: never once per thread.
    assert calls.read_text().count("run") == 2
    client.close()


def test_a_failing_plugin_is_not_run_for_every_request_and_its_output_is_not_shown(
    switchable: tuple[Path, Path, Path, Path],
) -> None:
    path, calls, mode, _ = switchable
    mode.write_text("fail")
    credentials = kubeconfig.from_kubeconfig(path).credentials
    for _ in range(3):
        with pytest.raises(ApiUnavailableError) as raised:
            credentials.headers()
        assert "the identity provider is down" in str(raised.value)
        assert "printed-secret-token" not in str(raised.value)
    assert calls.read_text().count("run") == 1  # the failure is held a few seconds


def test_in_cluster_reaches_an_ipv6_service_address(
    control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("t")
    (tmp_path / "ca.crt").write_bytes((control_plane.folder / "pki" / "ca.crt").read_bytes())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    endpoint = kubeconfig.in_cluster(tmp_path)
    assert endpoint.server == "https://[fd00::1]:443"
    assert endpoint.credentials.headers() == {"Authorization": "Bearer t"}


def test_a_late_401_for_an_older_token_keeps_the_new_one(
    switchable: tuple[Path, Path, Path, Path],
) -> None:
    path, calls, _, token_file = switchable
    token_file.write_text("first")
    credentials = kubeconfig.from_kubeconfig(path).credentials
    first = credentials.headers()
    token_file.write_text("second")
    credentials.rejected(first)
    assert credentials.headers() == {"Authorization": "Bearer second"}
    credentials.rejected(first)  # another thread's request, sent before the refresh
    assert credentials.headers() == {"Authorization": "Bearer second"}
    assert calls.read_text().count("run") == 2
