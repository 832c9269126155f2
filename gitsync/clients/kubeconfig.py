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

As client-go, it sends no credentials at all to an ``http://`` server, uses an exec
plugin only when the user has no token, basic auth or client certificate, refuses a
CA together with ``insecure-skip-tls-verify``, and without ``proxy-url`` takes the
proxy from ``HTTPS_PROXY``/``HTTP_PROXY`` and ``NO_PROXY`` (loopback never proxied).

``auth-provider`` (gcp, azure, oidc) is refused with a message naming the exec plugin
that replaced it; client-go dropped gcp and azure in 1.26. Credentials are never
logged or put in an error's text. A client key given as data reaches the TLS context
through an anonymous in-memory file (``memfd``; a private temporary folder where
there is none, removed at once): Python's ``ssl`` loads certificates from paths only.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

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
#: After a plugin failed, requests fail at once for this long instead of each running
#: it again under the lock (which would stall every writer behind it).
_EXEC_FAILURE_HOLD: Final = 5.0
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

    def rejected(self, sent: Mapping[str, str]) -> None:
        """The server answered 401 to a request sent with ``sent`` (the headers this
        gave): if they are still the current ones, they are stale. A late 401 for an
        older token must not throw away the one another thread just got."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An API server and how to reach it as one identity."""

    #: ``https://host:port``, maybe with a path prefix; no trailing slash.
    server: str
    ssl_context: ssl.SSLContext | None
    #: The name the server's certificate is checked against, when not the URL's host.
    server_hostname: str | None
    #: An http(s) proxy's URL, without credentials (those are in ``proxy_headers``).
    proxy: str | None
    credentials: Credentials
    proxy_headers: Mapping[str, str] = field(default_factory=dict)
    #: ``insecure-skip-tls-verify``: the server's certificate is not checked at all.
    insecure: bool = False


class _Static:
    """Headers fixed for the process: a token, basic auth, impersonation, or none."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = dict(headers)

    def headers(self) -> dict[str, str]:
        return dict(self._headers)

    def rejected(self, sent: Mapping[str, str]) -> None:
        pass


class _TokenFile:
    """A bearer token read from a file, again once a minute or after a 401."""

    def __init__(self, path: Path, *, fallback: str | None, extra: Mapping[str, str]) -> None:
        self._path = path
        self._extra = dict(extra)
        self._lock = threading.Lock()
        # Read now, so a kubeconfig naming a file that cannot be read fails at start.
        self._token = _read_token(path) or fallback
        if self._token is None:
            raise ConfigurationError(f"token file {path}: cannot be read, or is empty")
        self._read_at = time.monotonic()

    def headers(self) -> dict[str, str]:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= TOKEN_FILE_PERIOD:
                # Keeps the last token when the file cannot be read or is empty
                # (client-go does too): a rotation in progress must not fail requests
                # the old token still serves.
                self._token = _read_token(self._path) or self._token
                self._read_at = now
            token = self._token
        return {**self._extra, "Authorization": f"Bearer {token}"}

    def rejected(self, sent: Mapping[str, str]) -> None:
        with self._lock:
            if sent.get("Authorization") == f"Bearer {self._token}":
                self._read_at = float("-inf")


def _read_token(path: Path) -> str | None:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return _checked_token(token, f"token file {path}") if token else None


@dataclass(frozen=True, slots=True)
class _Plugin:
    """An exec plugin's stanza, checked when the kubeconfig is read."""

    version: str
    command: str
    #: What is run: the command, a path relative to the kubeconfig's folder when it
    #: holds a slash, and its arguments.
    argv: tuple[str, ...]
    env: Mapping[str, str]
    install_hint: str | None
    #: KUBERNETES_EXEC_INFO, as JSON.
    info: str


class _Exec:
    """A credential plugin's token, run again when it expires or is refused."""

    def __init__(self, plugin: _Plugin, *, extra: Mapping[str, str]) -> None:
        self._plugin = plugin
        self._extra = dict(extra)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires: float | None = None
        self._failed: tuple[float, Exception] | None = None

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or (
                self._expires is not None and time.time() >= self._expires - _EXPIRY_MARGIN
            ):
                if self._failed is not None and time.monotonic() < self._failed[0]:
                    # A new exception each time: threads re-raising one object would
                    # keep growing its traceback.
                    held = self._failed[1]
                    raise type(held)(str(held)) from held
                try:
                    self._token, self._expires = _run_plugin(self._plugin)
                except (ApiUnavailableError, ConfigurationError) as exc:
                    self._failed = (time.monotonic() + _EXEC_FAILURE_HOLD, exc)
                    raise
                self._failed = None
            token = self._token
        return {**self._extra, "Authorization": f"Bearer {token}"}

    def rejected(self, sent: Mapping[str, str]) -> None:
        with self._lock:
            if sent.get("Authorization") == f"Bearer {self._token}":
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
    proxy, proxy_headers = _proxy(None, server=server, where="in-cluster configuration")
    return Endpoint(server, context, None, proxy, credentials, proxy_headers)


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
        # Not resolved: a kubeconfig mounted from a Secret is a link into a folder
        # kubelet replaces at each update, and its relative paths must follow the
        # link, not the folder of the day (client-go uses the path as given).
        base = Path(os.path.abspath(file)).parent
        for section, into, stanza in (
            ("clusters", clusters, "cluster"),
            ("users", users, "user"),
            ("contexts", contexts, "context"),
        ):
            for item in document.get(section) or []:
                if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                    raise ConfigurationError(f"{file}: an entry of {section} has no name")
                body = item.get(stanza) or {}
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
    where = f"cluster {cluster_name!r}"
    server = _string(body, "server", where).rstrip("/")
    if not server.startswith(("https://", "http://")):
        raise ConfigurationError(f"{where}: server {server!r} is no http(s) URL")
    proxy, proxy_headers = _proxy(body.get("proxy-url"), server=server, where=where)
    if not server.startswith("https://"):
        # client-go reads a user's credentials only for TLS: none go out in clear.
        return Endpoint(server, None, None, proxy, _Static({}), proxy_headers)
    user_body: Mapping[str, Any] = user.body if user else {}
    user_base = user.base if user else cluster.base
    what = f"user {user_name!r}"
    insecure = body.get("insecure-skip-tls-verify") is True
    ca_file = _path(body, "certificate-authority", base=cluster.base)
    ca_data = _data(body, "certificate-authority-data", where)
    if insecure and (ca_file is not None or ca_data is not None):
        raise ConfigurationError(
            f"{where}: a certificate authority and insecure-skip-tls-verify together"
            " (client-go refuses this too: the CA would not be checked)"
        )
    cert = _client_certificate(user_body, base=user_base, what=what)
    hostname = body.get("tls-server-name")
    return Endpoint(
        server=server,
        ssl_context=_tls_context(ca_file=ca_file, ca_data=ca_data, insecure=insecure, cert=cert),
        server_hostname=hostname if isinstance(hostname, str) and hostname else None,
        proxy=proxy,
        credentials=_credentials(
            user_body,
            base=user_base,
            cluster=body,
            cluster_base=cluster.base,
            has_certificate=cert is not None,
            what=what,
        ),
        proxy_headers=proxy_headers,
        insecure=insecure,
    )


def _proxy(configured: object, *, server: str, where: str) -> tuple[str | None, dict[str, str]]:
    """The proxy to reach ``server`` through (``proxy-url``, else the environment's),
    without its credentials, and the headers that carry them."""
    if configured is None:
        proxy = _environment_proxy(server)
    elif isinstance(configured, str) and configured.startswith(("http://", "https://")):
        proxy = configured
    else:
        raise ConfigurationError(f"{where}: only http(s) proxies are supported")
    if proxy is None:
        return None, {}
    parts = urlsplit(proxy)
    if parts.username is None:
        return proxy, {}
    # urllib3 does not take a proxy's credentials from its URL, as Go's transport does.
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, {"Proxy-Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def _environment_proxy(server: str) -> str | None:
    """Go's ProxyFromEnvironment: HTTPS_PROXY or HTTP_PROXY by scheme, NO_PROXY, and
    never for localhost or a loopback address."""
    parts = urlsplit(server)
    host = parts.hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    # Go reads the upper-case name first (Python's urllib, the lower-case one).
    proxy = _environment(f"{parts.scheme}_proxy")
    if not proxy or _bypassed(host, _environment("no_proxy")):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _environment(name: str) -> str:
    return os.environ.get(name.upper()) or os.environ.get(name) or ""


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether NO_PROXY names ``host``: ``*``, the host, a parent domain, or (as Go,
    unlike Python's urllib) a network containing its address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if address is not None and address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        name = name.lstrip(".")
        if host.lower() == name or host.lower().endswith("." + name):
            return True
    return False


# --- TLS -------------------------------------------------------------------------------


def _tls_context(
    *,
    ca_file: Path | None,
    ca_data: bytes | None,
    insecure: bool,
    cert: tuple[Path | bytes, Path | bytes] | None,
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
            with _as_file(cert[0]) as certificate, _as_file(cert[1]) as key:
                # An encrypted key would make OpenSSL ask for its password on the
                # terminal; an empty one fails instead.
                context.load_cert_chain(certificate, key, password=lambda: b"")
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigurationError(f"TLS: {exc}") from exc
    return context


@contextmanager
def _as_file(source: Path | bytes) -> Iterator[str]:
    """A path ``ssl`` can load ``source`` from: a file named in the kubeconfig as it
    is, data through an anonymous in-memory file, which nothing else can open and
    which is gone when closed, even if the process is killed."""
    if isinstance(source, Path):
        yield str(source)
        return
    try:
        descriptor = os.memfd_create("gitsync-tls", os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # not Linux: a folder only this user can enter
        folder = tempfile.mkdtemp(prefix="gitsync-tls-")  # mode 0700
        try:
            path = Path(folder, "pem")
            path.write_bytes(source)
            yield str(path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    try:
        os.write(descriptor, source)
        yield f"/proc/self/fd/{descriptor}"
    finally:
        os.close(descriptor)


def _client_certificate(
    user: Mapping[str, Any], *, base: Path, what: str
) -> tuple[Path | bytes, Path | bytes] | None:
    certificate: Path | bytes | None = _data(user, "client-certificate-data", what) or _file(
        _path(user, "client-certificate", base=base)
    )
    key: Path | bytes | None = _data(user, "client-key-data", what) or _file(
        _path(user, "client-key", base=base)
    )
    if (certificate is None) != (key is None):
        raise ConfigurationError(f"{what}: a client certificate and its key go together")
    return (certificate, key) if certificate is not None and key is not None else None


# --- credentials -----------------------------------------------------------------------


def _credentials(
    user: Mapping[str, Any],
    *,
    base: Path,
    cluster: Mapping[str, Any],
    cluster_base: Path,
    has_certificate: bool,
    what: str,
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
    token = user.get("token")
    token = _checked_token(token, what) if isinstance(token, str) and token.strip() else None
    token_file = _path(user, "tokenFile", base=base)
    username, password = user.get("username"), user.get("password")
    basic = isinstance(username, str) and bool(username) and isinstance(password, str)
    if (token is not None or token_file is not None) and basic:
        raise ConfigurationError(f"{what}: a token and basic auth, more than one way to log in")
    if user.get("exec") is not None and not isinstance(user.get("exec"), dict):
        raise ConfigurationError(f"{what}: exec must be a mapping")
    if token_file is not None:
        # client-go: the file's token, once read, takes precedence over ``token``.
        return _TokenFile(token_file, fallback=token, extra=extra)
    if token is not None:
        return _Static({**extra, "Authorization": f"Bearer {token}"})
    if basic:
        pair = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return _Static({**extra, "Authorization": f"Basic {pair}"})
    # client-go runs a plugin only for a user with no other way to log in.
    if isinstance(plugin := user.get("exec"), dict) and not has_certificate:
        checked = _plugin(plugin, base=base, cluster=cluster, cluster_base=cluster_base)
        return _Exec(checked, extra=extra)
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


def _plugin(
    config: Mapping[str, Any], *, base: Path, cluster: Mapping[str, Any], cluster_base: Path
) -> _Plugin:
    """An exec stanza checked, so that its mistakes show when the kubeconfig is read."""
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
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigurationError(f"exec plugin {command!r}: args must be a list of strings")
    env_list = config.get("env") or []
    if not isinstance(env_list, list) or not all(
        isinstance(item, dict) and isinstance(item.get("name"), str) for item in env_list
    ):
        raise ConfigurationError(f"exec plugin {command!r}: env must be a list of name/value")
    info: dict[str, Any] = {"interactive": False}
    if config.get("provideClusterInfo") is True:
        info["cluster"] = _cluster_info(cluster, base=cluster_base)
    # A command with a slash in it is a path, relative to the kubeconfig's folder.
    executable = str(base / command) if "/" in command and not command.startswith("/") else command
    hint = config.get("installHint")
    return _Plugin(
        version=str(version),
        command=command,
        argv=(executable, *args),
        env={item["name"]: str(item.get("value", "")) for item in env_list},
        install_hint=hint if isinstance(hint, str) else None,
        info=orjson.dumps({"apiVersion": version, "kind": "ExecCredential", "spec": info}).decode(),
    )


def _run_plugin(plugin: _Plugin) -> tuple[str, float | None]:
    """Run an exec plugin; its token and when it expires (epoch seconds)."""
    command = plugin.command
    env = {**os.environ, **plugin.env, "KUBERNETES_EXEC_INFO": plugin.info}
    try:
        done = subprocess.run(
            plugin.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_EXEC_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        hint = f": {plugin.install_hint}" if plugin.install_hint else ""
        raise ConfigurationError(f"exec plugin {command!r} not found{hint}") from exc
    except subprocess.TimeoutExpired as exc:
        # Not the exception's text: it quotes the arguments, which may hold secrets.
        raise ApiUnavailableError(
            f"exec plugin {command!r} did not finish in {_EXEC_TIMEOUT:g} s"
        ) from exc
    except OSError as exc:
        raise ApiUnavailableError(f"exec plugin {command!r}: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        # Its stderr says why (say, an expired login); its stdout may hold secrets.
        said = done.stderr.decode("utf-8", errors="replace").strip()[-500:]
        raise ApiUnavailableError(f"exec plugin {command!r} exited {done.returncode}: {said}")
    return _credential(done.stdout, version=plugin.version, command=command)


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
    if not isinstance(token, str) or not token.strip():
        if status.get("clientCertificateData"):
            raise ConfigurationError(
                f"exec plugin {command!r}: client certificates from exec plugins are not"
                " supported; configure it to issue a token"
            )
        raise ConfigurationError(f"exec plugin {command!r}: its ExecCredential has no token")
    token = _checked_token(token.strip(), f"exec plugin {command!r}")
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


def _cluster_info(cluster: Mapping[str, Any], *, base: Path) -> dict[str, Any]:
    """What a plugin with provideClusterInfo is told of the cluster (client-go's
    ExecCredential spec.cluster), the CA as data wherever the kubeconfig has it."""
    info: dict[str, Any] = {"server": cluster.get("server")}
    for key in ("tls-server-name", "insecure-skip-tls-verify", "proxy-url"):
        if key in cluster:
            info[key] = cluster[key]
    ca = _data(cluster, "certificate-authority-data", "cluster") or _read(
        _path(cluster, "certificate-authority", base=base)
    )
    if ca is not None:
        info["certificate-authority-data"] = base64.b64encode(ca).decode("ascii")
    extensions = cluster.get("extensions") or []
    for extension in extensions if isinstance(extensions, list) else []:
        if isinstance(extension, dict) and extension.get("name") == _EXEC_EXTENSION:
            info["config"] = extension.get("extension")
    return info


def _checked_token(token: str, what: str) -> str:
    """A token as a header can carry it; never quoted in the error."""
    if not all(" " < character < "\x7f" for character in token):
        raise ConfigurationError(f"{what}: the token holds spaces or characters beyond ASCII")
    return token


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
        # Go's decoder skips line breaks, so kubectl reads base64 wrapped in lines.
        text = str(value).replace("\r", "").replace("\n", "")
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"{what}: {key} is not base64") from exc


def _file(path: Path | None) -> Path | None:
    if path is not None and not path.is_file():
        raise ConfigurationError(f"{path}: no such file")
    return path


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: {exc.strerror or exc}") from exc
