"""Run a real kube-apiserver + etcd on 127.0.0.1 for development and tests.

This is gitsync's "embedded default": what a newcomer reconciles against when they
have no cluster, and what every integration test talks to. It runs the same binaries
a cluster runs (see :mod:`gitsync.dev.binaries`), with secure serving, RBAC and an
admin client certificate, the real KServe and Kubeflow CRDs, and the dev controllers
that stand in for KServe and the Training Operator; on request, a Prometheus server
scraping the controllers' synthetic request metrics (see :mod:`gitsync.dev.prometheus`).

Everything lives in one folder: ``state.json`` (what runs, with PIDs and ports),
``ports.json``, ``kubeconfig``, ``pki/``, ``etcd/`` (data), ``prometheus.yml`` and
``prometheus/`` (its data), and ``logs/``. Processes are started in their own
session so they outlive the ``gitsync dev up`` that started them; ``down`` stops
exactly the PIDs recorded, after checking each still runs the program we started
(a PID may have been reused).
"""

from __future__ import annotations

import base64
import contextlib
import enum
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from gitsync.dev import prometheus as prom
from gitsync.dev.binaries import Binaries, ensure_binaries
from gitsync.dev.pki import Pki, ensure_pki
from gitsync.errors import ConfigurationError, ControlPlaneError

__all__ = [
    "Component",
    "ComponentStatus",
    "ControlPlane",
    "down",
    "status",
    "up",
]

Progress = Callable[[str], None]

_READY_TIMEOUT_S = 90.0
_CONTROLLERS_MARKER = "gitsync.dev.controllers"
_STOP_TIMEOUT_S = 15.0


class Component(enum.Enum):
    """The processes of a local control plane, in start order."""

    ETCD = "etcd"
    APISERVER = "kube-apiserver"
    CONTROLLERS = "dev-controllers"
    PROMETHEUS = "prometheus"


# Stop order: what depends on others first.
_STOP_ORDER = (Component.PROMETHEUS, Component.CONTROLLERS, Component.APISERVER, Component.ETCD)
# Started only on request: not running is not a fault unless it was started.
_OPTIONAL = frozenset({Component.PROMETHEUS})


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    component: Component
    pid: int | None
    running: bool
    endpoint: str | None
    log: Path


@dataclass(frozen=True, slots=True)
class ControlPlane:
    """A running local control plane.

    ``prometheus_url`` is the Prometheus HTTP API's base address when Prometheus runs.
    """

    folder: Path
    kubeconfig: Path
    server: str
    version: str
    prometheus_url: str | None = None

    def client_kubeconfig(self, *, user: str, groups: tuple[str, ...] = ()) -> Path:
        """Write a kubeconfig for another identity, signed by this control plane's CA.

        Tests use it to act as an unprivileged user that RBAC must deny.
        """
        pki = ensure_pki(self.folder / "pki")
        pair = pki.ca.issue_client(user=user, groups=groups)
        # The kubernetes client splits kubeconfig paths at ":" (as in $KUBECONFIG).
        path = self.folder / "users" / f"{user.replace(':', '_')}.kubeconfig"
        path.parent.mkdir(exist_ok=True)
        _write_kubeconfig(
            path,
            server=self.server,
            ca_pem=pki.ca.pair.cert_pem,
            cert_pem=pair.cert_pem,
            key_pem=pair.key_pem,
            user=user,
        )
        return path


# --- state file -------------------------------------------------------------------


def _state_path(folder: Path) -> Path:
    return folder / "state.json"


def _read_state(folder: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(_state_path(folder).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{_state_path(folder)}: unreadable state: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _write_state(folder: Path, state: dict[str, dict[str, object]]) -> None:
    tmp = _state_path(folder).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(_state_path(folder))


# --- processes ----------------------------------------------------------------------


def _pid_runs(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive (not a zombie) and its command line contains ``marker``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    process_state = stat.rsplit(")", 1)[-1].split()[0]
    return process_state not in {"Z", "X"} and marker in cmdline


def _record_runs(record: dict[str, object] | None) -> bool:
    if not record:
        return False
    pid, marker = record.get("pid"), record.get("marker")
    return isinstance(pid, int) and isinstance(marker, str) and _pid_runs(pid, marker)


def _spawn(
    argv: Sequence[str], *, marker: str, what: str, log: Path, env: dict[str, str] | None = None
) -> int:
    """Start a process in its own session; return its PID once it runs our program.

    Right after fork, /proc/PID/cmdline is empty or still the parent's: waiting until
    it shows ``marker`` keeps later liveness checks from mistaking a process that is
    still starting for one that died.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10.0
    while not _pid_runs(proc.pid, marker):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise ControlPlaneError(f"{what} exited at start; see {log}:\n{_tail(log)}")
        time.sleep(0.01)
    return proc.pid


def _reap(pid: int) -> None:
    # Our own children (the pytest fixture case) stay zombies until waited for.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _stop(record: dict[str, object]) -> bool:
    """Stop one recorded process; True if it was running."""
    if not _record_runs(record):
        return False
    pid = int(str(record["pid"]))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        _reap(pid)
        if not _record_runs(record):
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    while _record_runs(record):
        _reap(pid)
        time.sleep(0.05)
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now, as the servers here bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As Go's listeners (kube-apiserver, etcd) do: without SO_REUSEADDR, the
        # TIME_WAIT sockets a killed server leaves make its port look taken for a
        # minute, and `dev up` moved it to a new port, breaking every kubeconfig.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _ports(
    folder: Path, names: Sequence[str] = ("etcd-client", "etcd-peer", "apiserver")
) -> dict[str, int]:
    """Stable ports per folder, so a restarted control plane keeps its kubeconfig valid
    (and Prometheus its scrape target)."""
    path = folder / "ports.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    if not isinstance(saved, dict):
        saved = {}
    ports: dict[str, int] = {}
    for name in names:
        port = saved.get(name)
        ports[name] = port if isinstance(port, int) and _port_free(port) else _free_port()
    path.write_text(json.dumps({**saved, **ports}), encoding="utf-8")
    return ports


def _has_default_route() -> bool:
    try:
        lines = Path("/proc/net/route").read_text(encoding="utf-8").splitlines()[1:]
    except OSError:
        return True
    return any(line.split()[1] == "00000000" for line in lines if len(line.split()) > 1)


# --- readiness ------------------------------------------------------------------------


def _wait_until(
    check: Callable[[], bool],
    *,
    what: str,
    log: Path,
    alive: Callable[[], bool],
    timeout: float = _READY_TIMEOUT_S,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not alive():
            raise ControlPlaneError(f"{what} exited during start-up; see {log}:\n{_tail(log)}")
        time.sleep(0.1)
    raise ControlPlaneError(f"{what} not ready after {timeout:.0f}s; see {log}:\n{_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _admin_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(
        str(pki.ca_cert.with_name("admin.crt")), str(pki.ca_cert.with_name("admin.key"))
    )
    return context


def _get_json(url: str, context: ssl.SSLContext) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310
        data = json.loads(response.read())
    return data if isinstance(data, dict) else {}


# --- kubeconfig -----------------------------------------------------------------------


def _write_kubeconfig(
    path: Path, *, server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, user: str
) -> None:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "gitsync-dev",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)},
            }
        ],
        "contexts": [{"name": "gitsync-dev", "context": {"cluster": "gitsync-dev", "user": user}}],
        "current-context": "gitsync-dev",
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)


# --- up / down / status ---------------------------------------------------------------


def _etcd_argv(binary: Path, folder: Path, ports: dict[str, int]) -> list[str]:
    client = f"http://127.0.0.1:{ports['etcd-client']}"
    peer = f"http://127.0.0.1:{ports['etcd-peer']}"
    return [
        str(binary),
        "--name=gitsync-dev",
        f"--data-dir={folder / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=gitsync-dev={peer}",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def _apiserver_argv(binary: Path, pki: Pki, ports: dict[str, int]) -> list[str]:
    argv = [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{ports['etcd-client']}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['apiserver']}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        "--authorization-mode=RBAC",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.service_account_key}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--allow-privileged=true",
        # No controller-manager runs here to mint service-account tokens.
        "--disable-admission-plugins=ServiceAccount",
        "--profiling=false",
    ]
    if not _has_default_route():
        # Without a default route kube-apiserver cannot pick an address to advertise.
        argv.append("--advertise-address=127.0.0.1")
    return argv


def _controllers_argv(kubeconfig: Path, metrics_port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gitsync.dev.controllers",
        "--kubeconfig",
        str(kubeconfig),
        "--metrics-port",
        str(metrics_port),
    ]


def up(
    folder: Path,
    *,
    crd_dirs: Sequence[Path] = (),
    controllers: bool = True,
    prometheus: bool = False,
    progress: Progress | None = None,
    binaries: Binaries | None = None,
) -> ControlPlane:
    """Start (or find running) etcd, kube-apiserver, the dev controllers and,
    with ``prometheus``, a Prometheus server scraping the controllers' metrics.

    Idempotent: what already runs is kept; what is missing is started; CRDs are
    server-side applied every time, which is a no-op when they are unchanged. When
    start-up fails, the processes this call started are stopped again.
    """
    folder = folder.resolve()
    before = {name: record.get("pid") for name, record in _read_state(folder).items()}
    try:
        return _up(
            folder,
            crd_dirs=crd_dirs,
            controllers=controllers,
            prometheus=prometheus,
            progress=progress,
            binaries=binaries,
        )
    except BaseException:
        state = _read_state(folder)
        for component in _STOP_ORDER:
            record = state.get(component.value)
            if record and record.get("pid") != before.get(component.value):
                _stop(record)
                state.pop(component.value)
        if _state_path(folder).exists():
            _write_state(folder, state)
        raise


def _up(
    folder: Path,
    *,
    crd_dirs: Sequence[Path],
    controllers: bool,
    prometheus: bool,
    progress: Progress | None,
    binaries: Binaries | None,
) -> ControlPlane:
    from gitsync.dev.crds import (  # noqa: PLC0415 - keeps `dev status` light
        install_crds,
        install_objects,
    )

    say = progress or (lambda _msg: None)
    folder.mkdir(parents=True, exist_ok=True)
    logs = folder / "logs"
    state = _read_state(folder)
    pki = ensure_pki(folder / "pki")
    kubeconfig = folder / "kubeconfig"

    core = (Component.ETCD, Component.APISERVER)
    if not all(_record_runs(state.get(c.value)) for c in core):
        # Half a control plane is no use: restart both with the same data.
        for component in (Component.CONTROLLERS, Component.APISERVER, Component.ETCD):
            if record := state.pop(component.value, None):
                _stop(record)
        bins = binaries or ensure_binaries(progress=say)
        ports = _ports(folder)

        etcd_log = logs / "etcd.log"
        etcd_pid = _spawn(
            _etcd_argv(bins.etcd, folder, ports), marker=str(bins.etcd), what="etcd", log=etcd_log
        )
        state[Component.ETCD.value] = {
            "pid": etcd_pid,
            "marker": str(bins.etcd),
            "endpoint": f"http://127.0.0.1:{ports['etcd-client']}",
            "log": str(etcd_log),
        }
        _write_state(folder, state)
        _wait_until(
            lambda: _http_ok(f"http://127.0.0.1:{ports['etcd-client']}/health"),
            what="etcd",
            log=etcd_log,
            alive=lambda: _pid_runs(etcd_pid, str(bins.etcd)),
        )
        say(f"etcd ready on 127.0.0.1:{ports['etcd-client']}")

        server = f"https://127.0.0.1:{ports['apiserver']}"
        api_log = logs / "kube-apiserver.log"
        api_pid = _spawn(
            _apiserver_argv(bins.kube_apiserver, pki, ports),
            marker=str(bins.kube_apiserver),
            what="kube-apiserver",
            log=api_log,
        )
        state[Component.APISERVER.value] = {
            "pid": api_pid,
            "marker": str(bins.kube_apiserver),
            "endpoint": server,
            "log": str(api_log),
        }
        _write_state(folder, state)
        _write_kubeconfig(
            kubeconfig,
            server=server,
            ca_pem=pki.ca.pair.cert_pem,
            cert_pem=pki.admin.cert_pem,
            key_pem=pki.admin.key_pem,
            user="gitsync-admin",
        )
        context = _admin_context(pki)
        _wait_until(
            lambda: _http_ok(f"{server}/readyz", context),
            what="kube-apiserver",
            log=api_log,
            alive=lambda: _pid_runs(api_pid, str(bins.kube_apiserver)),
        )
        _wait_until(
            lambda: _http_ok(f"{server}/api/v1/namespaces/default", context),
            what="the default namespace",
            log=api_log,
            alive=lambda: _pid_runs(api_pid, str(bins.kube_apiserver)),
        )
        say(f"kube-apiserver ready on {server}")

    server_endpoint = str(state[Component.APISERVER.value]["endpoint"])
    version = str(_get_json(f"{server_endpoint}/version", _admin_context(pki)).get("gitVersion"))

    for crd in install_crds(kubeconfig, crd_dirs):
        say(f"CRD {crd} established")
    for applied in install_objects(kubeconfig, crd_dirs):
        say(f"{applied} applied")

    running = state.get(Component.CONTROLLERS.value)
    if controllers and not (_record_runs(running) and (running or {}).get("endpoint")):
        # Not running, or started by an older gitsync without a metrics endpoint.
        if running:
            _stop(running)
        _start_controllers(folder, state, kubeconfig, say)

    prometheus_url = None
    if prometheus:
        prometheus_url = _up_prometheus(folder, state, say)
    elif (scraper := state.get(Component.PROMETHEUS.value)) and _record_runs(scraper):
        prometheus_url = str(scraper["endpoint"])

    return ControlPlane(
        folder=folder,
        kubeconfig=kubeconfig,
        server=server_endpoint,
        version=version,
        prometheus_url=prometheus_url,
    )


def _start_controllers(
    folder: Path, state: dict[str, dict[str, object]], kubeconfig: Path, say: Progress
) -> None:
    ctl_log = folder / "logs" / "dev-controllers.log"
    metrics_port = _ports(folder, ("dev-controllers-metrics",))["dev-controllers-metrics"]
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    argv = _controllers_argv(kubeconfig, metrics_port)
    env = dict(os.environ)
    # The controllers must import this very gitsync, even from a source checkout.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")) if p
    )
    pid = _spawn(argv, marker=_CONTROLLERS_MARKER, what="dev controllers", log=ctl_log, env=env)
    state[Component.CONTROLLERS.value] = {
        "pid": pid,
        "marker": _CONTROLLERS_MARKER,
        "endpoint": metrics_url,
        "log": str(ctl_log),
    }
    _write_state(folder, state)
    # Their metrics endpoint answers once imports, flags and the port are fine.
    try:
        _wait_until(
            lambda: _http_ok(metrics_url),
            what="dev controllers",
            log=ctl_log,
            alive=lambda: _pid_runs(pid, _CONTROLLERS_MARKER),
        )
    except ControlPlaneError:
        _reap(pid)
        raise
    say("dev controllers started (InferenceService, TFJob, PyTorchJob, TrainJob simulators)")


def _up_prometheus(folder: Path, state: dict[str, dict[str, object]], say: Progress) -> str:
    """Start Prometheus, or point the one running at the controllers' current endpoint."""
    controllers = state.get(Component.CONTROLLERS.value)
    target = controllers.get("endpoint") if controllers and _record_runs(controllers) else None
    if not isinstance(target, str):
        raise ConfigurationError(
            "Prometheus scrapes the dev controllers' metrics, and they do not run: "
            "start them too (leave out --no-controllers)"
        )
    config = folder / "prometheus.yml"
    changed = prom.write_config(config, metrics_url=target)
    record = state.get(Component.PROMETHEUS.value)
    if record and _record_runs(record):
        if changed:
            # SIGHUP makes Prometheus reread its configuration, keeping its data.
            os.kill(int(str(record["pid"])), signal.SIGHUP)
            say(f"Prometheus now scrapes {target}")
        return str(record["endpoint"])

    binary = prom.find_binary()
    data = folder / "prometheus"
    marker = prom.marker(data)
    port = _ports(folder, ("prometheus",))["prometheus"]
    address = f"http://127.0.0.1:{port}"
    log = folder / "logs" / "prometheus.log"
    pid = _spawn(
        prom.argv(binary, config=config, data=data, port=port),
        marker=marker,
        what="prometheus",
        log=log,
    )
    state[Component.PROMETHEUS.value] = {
        "pid": pid,
        "marker": marker,
        "endpoint": address,
        "log": str(log),
    }
    _write_state(folder, state)
    _wait_until(
        lambda: _http_ok(prom.ready_url(address)),
        what="prometheus",
        log=log,
        alive=lambda: _pid_runs(pid, marker),
    )
    say(f"Prometheus ready on {address}, scraping {target} every {prom.SCRAPE_INTERVAL_S}s")
    return address


def down(folder: Path) -> list[Component]:
    """Stop every process this folder's ``up`` started; return those that were running."""
    folder = folder.resolve()
    state = _read_state(folder)
    stopped = []
    for component in _STOP_ORDER:
        record = state.pop(component.value, None)
        if record and _stop(record):
            stopped.append(component)
    if _state_path(folder).exists():
        _write_state(folder, state)
    return stopped


def status(folder: Path) -> list[ComponentStatus]:
    """What this folder's control plane runs now (optional parts only once started)."""
    folder = folder.resolve()
    state = _read_state(folder)
    result = []
    for component in Component:
        record = state.get(component.value) or {}
        if component in _OPTIONAL and not record:
            continue
        pid = record.get("pid")
        endpoint = record.get("endpoint")
        result.append(
            ComponentStatus(
                component=component,
                pid=pid if isinstance(pid, int) else None,
                running=_record_runs(record),
                endpoint=endpoint if isinstance(endpoint, str) else None,
                log=Path(str(record.get("log") or folder / "logs" / f"{component.value}.log")),
            )
        )
    return result
