"""Where the API server is and who gitsync is to it: kubeconfig files and a pod's
ServiceAccount, read as client-go reads them.

This was the ``kubernetes`` package's job. Importing it costs about 0.1 s of every
``gitsync sync`` process (its generated API client, hundreds of modules, comes with
the loader), a tenth of a one-change sync, and gitsync never used that client: its
requests are raw JSON (:mod:`gitsync.clients.kube`). What this module does is small
and specified by client-go: pick the context, resolve its cluster and user (relative
paths against the file that named them, ``$KUBECONFIG``'s files merged, the first to
set a name winning), build a TLS context, and give each request its credentials:

* a client certificate (file or data), a bearer token, a token file (read again
  every minute, so a rotated token is picked up), basic auth, impersonation;
* an exec plugin (``client.authentication.k8s.io/v1`` and ``v1beta1``): run when a
  request first needs it and again once its credential expires or the server
  answers 401, never interactively (a daemon has no terminal);
* in a pod: the ServiceAccount's token (read again every minute, as kubelet rotates
  it) and CA, and ``KUBERNETES_SERVICE_HOST``/``_PORT``.

``auth-provider`` (gcp, azure, oidc) is refused with a message naming the exec plugin
that replaced it; client-go dropped gcp and azure in 1.26. Credentials are never
logged and never written anywhere but a private temporary file that exists only while
the TLS context loads it (Python's ``ssl`` reads client certificates from files).
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import orjson
import yaml

from gitsync.errors import ApiUnavailableError, ConfigurationError

__all__ = ["Credentials", "Endpoint", "from_kubeconfig", "in_cluster"]

#: How often a token file is read again (client-go: about a minute).
TOKEN_FILE_PERIOD: Final = 60.0
#: An exec credential is renewed this long before it expires, so no request is sent
#: with one about to lapse on the way.
_EXPIRY_MARGIN: Final = 10.0
_EXEC_TIMEOUT: Final = 60.0
_EXEC_VERSIONS: Final = frozenset(
    {"client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"}
)
#: The cluster extension whose value a plugin with provideClusterInfo gets as config.
_EXEC_EXTENSION: Final = "client.authentication.k8s.io/exec"
_REPLACEMENTS: Final = {
    "gcp": "gke-gcloud-auth-plugin",
    "azure": "kubelogin (Azure/kubelogin)",
    "oidc": "kubelogin (int128/kubelogin)",
}


class Credentials(Protocol):
    """What authenticates each request: headers, and what to do on a 401."""

    def headers(self) -> dict[str, str]: ...

    def rejected(self) -> None:
        """The server answered 401: whatever is cached is stale."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An API server and how to reach it as one identity."""

    #: ``https://host:port``, maybe with a path prefix; no trailing slash.
    server: str
    ssl_context: ssl.SSLContext | None
    #: The name the server's certificate is checked against, when not the URL's host.
    server_hostname: str | None
    proxy: str | None
    credentials: Credentials


class _Static:
    """Headers fixed for the process: a token, basic auth, impersonation, or none."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = dict(headers)

    def headers(self) -> dict[str, str]:
        return dict(self._headers)

    def rejected(self) -> None:
        pass


class _TokenFile:
    """A bearer token read from a file, again once a minute or after a 401."""

    def __init__(self, path: Path, *, fallback: str | None, extra: Mapping[str, str]) -> None:
        self._path = path
        self._fallback = fallback
        self._extra = dict(extra)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._read_at = 0.0

    def headers(self) -> dict[str, str]:
        with self._lock:
            now = time.monotonic()
            if self._token is None or now - self._read_at >= TOKEN_FILE_PERIOD:
                try:
                    self._token = self._path.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    if self._token is None and self._fallback is None:
                        raise ApiUnavailableError(f"token file {self._path}: {exc}") from exc
                    # Keep the last token read (client-go does too): a rotation in
                    # progress must not fail requests the old token still serves.
                    self._token = self._token or self._fallback
                self._read_at = now
            token = self._token
        return {**self._extra, "Authorization": f"Bearer {token}"}

    def rejected(self) -> None:
        with self._lock:
            self._read_at = 0.0


class _Exec:
    """A credential plugin's token, run again when it expires or is refused."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        base: Path,
        cluster: Mapping[str, Any],
        extra: Mapping[str, str],
    ) -> None:
        self._config = config
        self._base = base
        self._cluster = cluster
        self._extra = dict(extra)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires: float | None = None

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or (
                self._expires is not None and time.time() >= self._expires - _EXPIRY_MARGIN
            ):
                self._token, self._expires = _run_plugin(
                    self._config, base=self._base, cluster=self._cluster
                )
            token = self._token
        return {**self._extra, "Authorization": f"Bearer {token}"}

    def rejected(self) -> None:
        with self._lock:
            self._token = None


def from_kubeconfig(path: Path | None = None, *, context: str | None = None) -> Endpoint:
    """The endpoint of ``context`` (default: the current one) in ``path``, else in
    ``$KUBECONFIG``'s files, else in ``~/.kube/config``."""
    files = [path] if path is not None else _default_files()
    where = str(path) if path is not None else os.pathsep.join(map(str, files))
    try:
        merged = _merge(files)
        return _endpoint(merged, context=context)
    except ConfigurationError as exc:
        raise ConfigurationError(f"kubeconfig {where}: {exc}") from exc


def in_cluster(serviceaccount_dir: Path) -> Endpoint:
    """The endpoint a pod's ServiceAccount reaches, as client-go's InClusterConfig."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ConfigurationError(
            "in-cluster configuration: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT"
            " must be set"
        )
    token = serviceaccount_dir / "token"
    ca = serviceaccount_dir / "ca.crt"
    for needed in (token, ca):
        if not needed.is_file():
            raise ConfigurationError(f"in-cluster configuration: {needed} does not exist")
    context = _tls_context(ca_file=ca, ca_data=None, insecure=False, cert=None)
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    credentials = _TokenFile(token, fallback=None, extra={})
    return Endpoint(server, context, None, None, credentials)


# --- reading and merging files -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Named:
    """A cluster, user or context stanza, and the folder its relative paths are in."""

    body: Mapping[str, Any]
    base: Path


@dataclass(frozen=True, slots=True)
class _Merged:
    clusters: Mapping[str, _Named]
    users: Mapping[str, _Named]
    contexts: Mapping[str, _Named]
    current: str


def _default_files() -> list[Path]:
    listed = os.environ.get("KUBECONFIG", "")
    if listed:
        return [Path(p).expanduser() for p in listed.split(os.pathsep) if p]
    return [Path("~/.kube/config").expanduser()]


def _merge(files: list[Path]) -> _Merged:
    """client-go's merge of several files: of each name, the first file's stanza."""
    clusters: dict[str, _Named] = {}
    users: dict[str, _Named] = {}
    contexts: dict[str, _Named] = {}
    current = ""
    read_any = False
    for file in files:
        try:
            text = file.read_bytes()
        except FileNotFoundError:
            continue  # $KUBECONFIG may name files that do not exist yet (client-go)
        except OSError as exc:
            raise ConfigurationError(f"{file}: {exc.strerror or exc}") from exc
        read_any = True
        try:
            document = yaml.load(text, Loader=yaml.CSafeLoader) or {}
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{file}: not YAML: {exc}") from exc
        if not isinstance(document, dict):
            raise ConfigurationError(f"{file}: not a kubeconfig (a mapping at the top)")
        base = file.resolve().parent
        for section, into, field in (
            ("clusters", clusters, "cluster"),
            ("users", users, "user"),
            ("contexts", contexts, "context"),
        ):
            for item in document.get(section) or []:
                if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                    raise ConfigurationError(f"{file}: an entry of {section} has no name")
                body = item.get(field) or {}
                if not isinstance(body, dict):
                    raise ConfigurationError(f"{file}: {section} {item['name']!r} is not a mapping")
                into.setdefault(item["name"], _Named(body, base))
        if not current and isinstance(document.get("current-context"), str):
            current = document["current-context"]
    if not read_any:
        raise ConfigurationError("no such file")
    return _Merged(clusters, users, contexts, current)


def _endpoint(merged: _Merged, *, context: str | None) -> Endpoint:
    name = context or merged.current
    if not name:
        raise ConfigurationError("no current-context, and no context given")
    if (chosen := merged.contexts.get(name)) is None:
        raise ConfigurationError(f"context {name!r} is not defined")
    cluster_name = _string(chosen.body, "cluster", f"context {name!r}")
    if (cluster := merged.clusters.get(cluster_name)) is None:
        raise ConfigurationError(f"cluster {cluster_name!r} (of context {name!r}) is not defined")
    user_name = chosen.body.get("user")
    user = merged.users.get(user_name) if isinstance(user_name, str) and user_name else None
    if isinstance(user_name, str) and user_name and user is None:
        raise ConfigurationError(f"user {user_name!r} (of context {name!r}) is not defined")
    body = cluster.body
    server = _string(body, "server", f"cluster {cluster_name!r}").rstrip("/")
    if not server.startswith(("https://", "http://")):
        raise ConfigurationError(f"cluster {cluster_name!r}: server {server!r} is no http(s) URL")
    user_body: Mapping[str, Any] = user.body if user else {}
    user_base = user.base if user else cluster.base
    what = f"user {user_name!r}"
    cert = _client_certificate(user_body, base=user_base, what=what)
    ssl_context = (
        _tls_context(
            ca_file=_path(body, "certificate-authority", base=cluster.base),
            ca_data=_data(body, "certificate-authority-data", f"cluster {cluster_name!r}"),
            insecure=body.get("insecure-skip-tls-verify") is True,
            cert=cert,
        )
        if server.startswith("https://")
        else None
    )
    proxy = body.get("proxy-url")
    if proxy is not None and not (isinstance(proxy, str) and proxy.startswith("http")):
        raise ConfigurationError(f"cluster {cluster_name!r}: only http(s) proxies are supported")
    hostname = body.get("tls-server-name")
    return Endpoint(
        server=server,
        ssl_context=ssl_context,
        server_hostname=hostname if isinstance(hostname, str) and hostname else None,
        proxy=proxy,
        credentials=_credentials(user_body, base=user_base, cluster=body, what=what),
    )


# --- TLS -------------------------------------------------------------------------------


def _tls_context(
    *,
    ca_file: Path | None,
    ca_data: bytes | None,
    insecure: bool,
    cert: tuple[bytes, bytes] | None,
) -> ssl.SSLContext:
    # Verifying, with hostnames; trusting only the kubeconfig's CA when it names one
    # (as client-go), the system's otherwise. Loading the system's store costs more
    # than the rest of connecting, so it is not loaded to be ignored.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif ca_data is not None:
            context.load_verify_locations(cadata=ca_data.decode("ascii", errors="replace"))
        elif ca_file is not None:
            context.load_verify_locations(cafile=str(ca_file))
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if cert is not None:
            _load_client_certificate(context, *cert)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigurationError(f"TLS: {exc}") from exc
    return context


def _load_client_certificate(context: ssl.SSLContext, certificate: bytes, key: bytes) -> None:
    # ssl reads a certificate chain only from files: a folder only this user can
    # enter, removed as soon as the context holds the key.
    folder = tempfile.mkdtemp(prefix="gitsync-tls-")
    try:
        cert_file, key_file = Path(folder, "cert.pem"), Path(folder, "key.pem")
        for file, data in ((cert_file, certificate), (key_file, key)):
            descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
        context.load_cert_chain(str(cert_file), str(key_file))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _client_certificate(
    user: Mapping[str, Any], *, base: Path, what: str
) -> tuple[bytes, bytes] | None:
    certificate = _data(user, "client-certificate-data", what) or _read(
        _path(user, "client-certificate", base=base)
    )
    key = _data(user, "client-key-data", what) or _read(_path(user, "client-key", base=base))
    if (certificate is None) != (key is None):
        raise ConfigurationError(f"{what}: a client certificate and its key go together")
    return (certificate, key) if certificate is not None and key is not None else None


# --- credentials -----------------------------------------------------------------------


def _credentials(
    user: Mapping[str, Any], *, base: Path, cluster: Mapping[str, Any], what: str
) -> Credentials:
    if "auth-provider" in user:
        provider = user["auth-provider"]
        name = provider.get("name") if isinstance(provider, dict) else None
        replacement = _REPLACEMENTS.get(str(name), "the provider's exec plugin")
        raise ConfigurationError(
            f"{what}: auth-provider {name!r} is not supported; use an exec plugin"
            f" ({replacement}), as kubectl does since Kubernetes 1.26"
        )
    extra = _impersonation(user, what)
    if isinstance(plugin := user.get("exec"), dict):
        return _Exec(plugin, base=base, cluster=cluster, extra=extra)
    if user.get("exec") is not None:
        raise ConfigurationError(f"{what}: exec must be a mapping")
    token = user.get("token")
    token = token if isinstance(token, str) and token else None
    if (token_file := _path(user, "tokenFile", base=base)) is not None:
        # client-go: the file's token, once read, takes precedence over ``token``.
        return _TokenFile(token_file, fallback=token, extra=extra)
    if token is not None:
        return _Static({**extra, "Authorization": f"Bearer {token}"})
    username, password = user.get("username"), user.get("password")
    if isinstance(username, str) and isinstance(password, str) and username:
        pair = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return _Static({**extra, "Authorization": f"Basic {pair}"})
    return _Static(extra)


def _impersonation(user: Mapping[str, Any], what: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    if isinstance(name := user.get("as"), str) and name:
        headers["Impersonate-User"] = name
    if isinstance(uid := user.get("as-uid"), str) and uid:
        headers["Impersonate-Uid"] = uid
    groups = user.get("as-groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise ConfigurationError(f"{what}: as-groups must be a list of names")
    if groups and not headers.get("Impersonate-User"):
        raise ConfigurationError(f"{what}: as-groups needs as (the user to impersonate)")
    # The server reads one group per header line, and a header of each name is sent
    # once: more than one group (or any extra) would need repeated headers.
    if len(groups) > 1 or user.get("as-user-extra"):
        raise ConfigurationError(
            f"{what}: impersonating more than one group, or as-user-extra, is not supported"
        )
    if groups:
        headers["Impersonate-Group"] = groups[0]
    return headers


def _run_plugin(
    config: Mapping[str, Any], *, base: Path, cluster: Mapping[str, Any]
) -> tuple[str, float | None]:
    """Run an exec plugin; its token and when it expires (epoch seconds)."""
    version = config.get("apiVersion")
    command = config.get("command")
    if version not in _EXEC_VERSIONS:
        raise ConfigurationError(f"exec plugin: apiVersion {version!r} is not supported")
    if not isinstance(command, str) or not command:
        raise ConfigurationError("exec plugin: command is missing")
    if config.get("interactiveMode") == "Always":
        raise ConfigurationError(
            f"exec plugin {command!r}: interactiveMode Always needs a terminal; gitsync has none"
        )
    args = config.get("args") or []
    env_list = config.get("env") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigurationError(f"exec plugin {command!r}: args must be a list of strings")
    env = dict(os.environ)
    for item in env_list if isinstance(env_list, list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            env[item["name"]] = str(item.get("value", ""))
    info: dict[str, Any] = {"interactive": False}
    if config.get("provideClusterInfo") is True:
        info["cluster"] = _cluster_info(cluster)
    env["KUBERNETES_EXEC_INFO"] = orjson.dumps(
        {"apiVersion": version, "kind": "ExecCredential", "spec": info}
    ).decode()
    # A command with a slash in it is a path, relative to the kubeconfig's folder.
    executable = str(base / command) if "/" in command and not command.startswith("/") else command
    try:
        done = subprocess.run(
            [executable, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_EXEC_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        hint = config.get("installHint")
        raise ConfigurationError(
            f"exec plugin {command!r} not found" + (f": {hint}" if isinstance(hint, str) else "")
        ) from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ApiUnavailableError(f"exec plugin {command!r}: {exc}") from exc
    if done.returncode != 0:
        # Its stderr says why (say, an expired login); its stdout may hold secrets.
        said = done.stderr.decode("utf-8", errors="replace").strip()[-500:]
        raise ApiUnavailableError(f"exec plugin {command!r} exited {done.returncode}: {said}")
    return _credential(done.stdout, version=str(version), command=command)


def _credential(output: bytes, *, version: str, command: str) -> tuple[str, float | None]:
    try:
        credential = orjson.loads(output)
    except orjson.JSONDecodeError as exc:
        raise ConfigurationError(f"exec plugin {command!r}: its output is not JSON") from exc
    status = credential.get("status") if isinstance(credential, dict) else None
    if (
        not isinstance(credential, dict)
        or credential.get("kind") != "ExecCredential"
        or credential.get("apiVersion") != version
        or not isinstance(status, dict)
    ):
        raise ConfigurationError(
            f"exec plugin {command!r}: its output is not an ExecCredential of {version}"
        )
    token = status.get("token")
    if not isinstance(token, str) or not token:
        if status.get("clientCertificateData"):
            raise ConfigurationError(
                f"exec plugin {command!r}: client certificates from exec plugins are not"
                " supported; configure it to issue a token"
            )
        raise ConfigurationError(f"exec plugin {command!r}: its ExecCredential has no token")
    expires = status.get("expirationTimestamp")
    if expires is None:
        return token, None
    try:
        moment = datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigurationError(
            f"exec plugin {command!r}: expirationTimestamp {expires!r} is not RFC 3339"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return token, moment.timestamp()


def _cluster_info(cluster: Mapping[str, Any]) -> dict[str, Any]:
    """What a plugin with provideClusterInfo is told of the cluster (client-go's
    ExecCredential spec.cluster), the CA as data."""
    info: dict[str, Any] = {"server": cluster.get("server")}
    for key in ("tls-server-name", "insecure-skip-tls-verify", "proxy-url"):
        if key in cluster:
            info[key] = cluster[key]
    if data := cluster.get("certificate-authority-data"):
        info["certificate-authority-data"] = data
    extensions = cluster.get("extensions") or []
    for extension in extensions if isinstance(extensions, list) else []:
        if (
            isinstance(extension, dict)
            and extension.get("name") == "client.authentication.k8s.io/exec"
        ):
            info["config"] = extension.get("extension")
    return info


# --- fields ----------------------------------------------------------------------------


def _string(body: Mapping[str, Any], key: str, what: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{what}: {key} is missing")
    return value


def _path(body: Mapping[str, Any], key: str, *, base: Path) -> Path | None:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _data(body: Mapping[str, Any], key: str, what: str) -> bytes | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"{what}: {key} is not base64") from exc


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: {exc.strerror or exc}") from exc
