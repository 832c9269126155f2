"""Real git remotes on 127.0.0.1 for the tests of :mod:`gitsync.clients.git`.

* :class:`GitDaemon` runs ``git daemon`` (the ``git://`` protocol) with receive-pack on.
* :class:`GitHttpServer` serves ``git http-backend`` (smart HTTP) from a small threaded
  Python server with basic auth, as real hosts do: ``git http-backend`` accepts pushes
  only from an authenticated ``REMOTE_USER``. It can also run an action just before
  it answers a push, to let another writer in between (a real race, not a mock).
* :class:`SilentServer` accepts TCP connections and never answers.

Everything else (making commits, reading the remote) goes through the ``git`` command
line, an implementation independent of the libgit2 code under test.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

GIT_ENV: Mapping[str, str] = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": os.environ.get("HOME", "/"),
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "Other Writer",
    "GIT_AUTHOR_EMAIL": "other@example.com",
    "GIT_COMMITTER_NAME": "Other Writer",
    "GIT_COMMITTER_EMAIL": "other@example.com",
    "LC_ALL": "C",
}


def git(*args: str | Path, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run the git command line; its stdout, stripped. Fails loudly with stderr."""
    result = subprocess.run(
        ["git", *map(str, args)],
        cwd=cwd,
        env={**GIT_ENV, **_inherited(), **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(map(str, args))} failed: {result.stderr}")
    return result.stdout.strip()


def _inherited() -> dict[str, str]:
    """What a hook's nested git commands must see (it marks them as nested)."""
    return {name: os.environ[name] for name in ("GITSYNC_TEST_NESTED",) if name in os.environ}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, *, alive: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"server for port {port} exited")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


# --- repositories -------------------------------------------------------------------


def init_bare(path: Path) -> Path:
    """A bare repository that, like a well-run host, refuses non-fast-forward pushes."""
    git("init", "--quiet", "--bare", "--initial-branch=main", path)
    git("config", "receive.denyNonFastForwards", "true", cwd=path)
    git("config", "receive.denyDeletes", "true", cwd=path)
    return path


class Clone:
    """A work clone driven by the git command line: "another writer"."""

    def __init__(self, path: Path, origin: Path | None = None) -> None:
        """Clone ``origin`` into ``path``, or (without ``origin``) use the clone there."""
        self.path = path
        if origin is not None:
            git("clone", "--quiet", origin, path)

    def write(self, files: Mapping[str, str | bytes | None]) -> None:
        for name, content in files.items():
            target = self.path / name
            if content is None:
                git("rm", "--quiet", "-r", name, cwd=self.path)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
            git("add", name, cwd=self.path)

    def commit(self, files: Mapping[str, str | bytes | None], message: str = "change") -> str:
        self.write(files)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.path)
        return git("rev-parse", "HEAD", cwd=self.path)

    def checkout(self, branch: str, *, new: bool = False, orphan: bool = False) -> None:
        if orphan:
            git("checkout", "--quiet", "--orphan", branch, cwd=self.path)
            git("rm", "--quiet", "-rf", "--ignore-unmatch", ".", cwd=self.path)
        elif new:
            git("checkout", "--quiet", "-b", branch, cwd=self.path)
        else:
            git("checkout", "--quiet", branch, cwd=self.path)

    def push(self, branch: str) -> None:
        git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=self.path)

    def sync(self, branch: str) -> None:
        """Check out the remote's ``branch`` as it is now (an empty orphan if missing)."""
        git("fetch", "--quiet", "--prune", "origin", cwd=self.path)
        if git("ls-remote", "--heads", "origin", branch, cwd=self.path):
            git("checkout", "--quiet", "-B", branch, f"origin/{branch}", cwd=self.path)
        else:
            self.checkout(f"new-{time.monotonic_ns()}", orphan=True)

    def race(self, branch: str) -> str:
        """Push one more commit to ``branch``, as another writer would; its id."""
        self.sync(branch)
        count = len(git("ls-files", "other", cwd=self.path).split())
        sha = self.commit({f"other/{count + 1}.txt": f"{count + 1}\n"}, "another writer")
        self.push(branch)
        return sha


_HOOK_TEMPLATE = """#!{python}
# Generated by tests/gitremotes.py: {purpose}
import os
import sys

sys.stdin.read()
if os.environ.get("GITSYNC_TEST_NESTED"):
    sys.exit(0)  # the nested push of the other writer itself
sys.path.insert(0, {root!r})
from pathlib import Path

from tests.gitremotes import Clone

once = Path({marker!r})
if {once!r} and once.exists():
    sys.exit(0)
once.touch()
os.environ["GITSYNC_TEST_NESTED"] = "1"
Clone(Path({clone!r})).race({branch!r})
"""


def install_racing_hook(bare: Path, clone: Clone, branch: str, *, once: bool) -> None:
    """A pre-receive hook that lets ``clone`` push to ``branch`` before each push lands.

    The pusher has already sent its update (old -> new) when the hook runs, so the
    server then finds the branch moved and refuses to apply it: the race a busy remote
    has between two writers, played by a real second clone.
    """
    _write_hook(
        bare,
        "pre-receive",
        _HOOK_TEMPLATE.format(
            python=sys.executable,
            purpose="another writer pushes while this push waits",
            root=str(Path(__file__).resolve().parents[1]),
            marker=str(bare / "raced-once"),
            once=once,
            clone=str(clone.path),
            branch=branch,
        ),
    )


def install_rejecting_hook(bare: Path, message: str) -> None:
    """A pre-receive hook that refuses every push, saying ``message``."""
    _write_hook(bare, "pre-receive", f"#!/bin/sh\ncat >/dev/null\necho '{message}' >&2\nexit 1\n")


def _write_hook(bare: Path, name: str, text: str) -> None:
    hook = bare / "hooks" / name
    hook.write_text(text)
    hook.chmod(0o755)


# --- git daemon ---------------------------------------------------------------------


class GitDaemon:
    """``git daemon`` serving every repository under ``root`` on 127.0.0.1."""

    def __init__(self, root: Path, log: Path, *, port: int | None = None) -> None:
        """``port``: a given one, to start a remote again where its clients expect it."""
        self.root = root
        self.port = port or free_port()
        self._log = log.open("ab")
        self._process = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                "--informative-errors",
                f"--base-path={root}",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                str(root),
            ],
            env=dict(GIT_ENV),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends its children too
        )
        try:
            wait_for_port(self.port, alive=lambda: self._process.poll() is None)
        except RuntimeError:
            self.stop()
            raise

    def url(self, repo: Path) -> str:
        return f"git://127.0.0.1:{self.port}/{repo.relative_to(self.root)}"

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=5)
        self._log.close()


# --- smart HTTP -------------------------------------------------------------------------

Phase = Literal["receive-pack-advertisement", "receive-pack"]


class GitHttpServer:
    """``git http-backend`` over HTTP/1.1 with basic auth, on 127.0.0.1.

    Every request needs the user and password: git itself serves pushes only to an
    authenticated user, and most hosts want credentials for reads of private repos.
    """

    def __init__(
        self, root: Path, *, username: str, password: str, tls: ssl.SSLContext | None = None
    ) -> None:
        self.root = root
        self.username = username
        self.password = password
        self.requests: list[tuple[str, str, int]] = []  # method, path, status
        self._actions: list[tuple[Phase, Callable[[], None]]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _GitHttpHandler)
        self._server.daemon_threads = True
        self._server.git = self  # type: ignore[attr-defined]
        self._scheme = "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, repo: Path) -> str:
        return f"{self._scheme}://127.0.0.1:{self.port}/{repo.relative_to(self.root)}"

    def before(self, phase: Phase, action: Callable[[], None]) -> None:
        """Run ``action`` once, just before the server answers the next such request.

        ``receive-pack-advertisement``: before it tells a pusher where the branches
        are (the pusher then works from the new state). ``receive-pack``: after the
        pusher chose its update, before the server applies it.
        """
        with self._lock:
            self._actions.append((phase, action))

    def take_action(self, phase: Phase) -> Callable[[], None] | None:
        with self._lock:
            for index, (when, action) in enumerate(self._actions):
                if when == phase:
                    del self._actions[index]
                    return action
        return None

    def authorized(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _GitHttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gitsync-test-git-http"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _serve(self) -> None:
        git_server: GitHttpServer = self.server.git  # type: ignore[attr-defined]
        body = self._read_body()
        path, _, query = self.path.partition("?")
        if not git_server.authorized(self.headers.get("Authorization")):
            git_server.requests.append((self.command, self.path, 401))
            self._reply(401, {"WWW-Authenticate": 'Basic realm="git"'}, b"unauthorized\n")
            return
        phase: Phase | None = None
        if path.endswith("/info/refs") and query == "service=git-receive-pack":
            phase = "receive-pack-advertisement"
        elif self.command == "POST" and path.endswith("/git-receive-pack"):
            phase = "receive-pack"
        action = git_server.take_action(phase) if phase else None
        if action is not None:
            action()
        env = {
            **GIT_ENV,
            "GIT_PROJECT_ROOT": str(git_server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": git_server.username,
            "REMOTE_ADDR": self.client_address[0],
        }
        if protocol := self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = protocol
        result = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = result.stdout.partition(b"\n\n")
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        git_server.requests.append((self.command, self.path, status))
        self._reply(status, headers, payload)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, headers: Mapping[str, str], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def tls_for_localhost(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 with a new self-signed certificate (its path).

    The certificate is its own authority: trusting that file trusts this server only.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gitsync test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path = folder / "server.crt"
    key_path = folder / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


# --- ssh ----------------------------------------------------------------------------------

SSHD = Path("/usr/sbin/sshd")


def sshd_missing() -> str | None:
    """Why no test sshd can run here, or None when it can."""
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        return "openssh-server is not installed"
    if os.geteuid() != 0:
        return "sshd needs root for its privilege separation"
    return None


class SshServer:
    """``sshd`` on 127.0.0.1 with its own host key, letting one client key in."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.host_key = keygen(folder / "host_key")
        self.client_key = keygen(folder / "client_key")
        self.client_public_key = folder / "client_key.pub"
        (folder / "authorized_keys").write_bytes(self.client_public_key.read_bytes())
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.port = free_port()
        config = folder / "sshd_config"
        config.write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {self.host_key}\n"
            f"PidFile {folder / 'sshd.pid'}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            f"PermitRootLogin prohibit-password\nAllowUsers {self.user}\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation
        self._log = (folder / "sshd.log").open("wb")
        self._process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port(self.port, alive=lambda: self._process.poll() is None)
        except RuntimeError:
            self.stop()
            raise

    def known_hosts_line(self) -> str:
        """This server's entry for a known_hosts file."""
        kind, key = Path(f"{self.host_key}.pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"

    def url(self, repo: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{repo}"

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=5)
        self._log.close()


def keygen(path: Path) -> Path:
    """A new ed25519 key pair without passphrase: ``path`` and ``path``.pub."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gitsync-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


# --- a server that never answers ---------------------------------------------------------


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self.port = int(self._socket.getsockname()[1])
        self._held: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self._held.append(connection)

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join(timeout=5)
        for connection in self._held:
            connection.close()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    return free_port()
