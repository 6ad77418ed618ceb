"""A throwaway Airflow deployment, started the way an operator would start one.

PostgreSQL (the distribution's package, installed with apt-get when missing) runs a cluster in a
temporary directory on a free port. The provider is built into a wheel and installed, not
editable, with ``apache-airflow[postgres]`` of the project's Airflow version into a separate venv.
``airflow db migrate`` runs, then api-server, scheduler, dag-processor, triggerer and the ICE
emulator run as separate processes (LocalExecutor). Every process is started in its own session
and stopped by PID, with everything it spawned, whatever happens.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_VERSION = importlib.metadata.version("apache-airflow")
#: The example DAG files (not in the wheel: users copy them into their DAGs folder) and the suite's own.
DAG_FILES = (
    REPO / "example_dags" / "ice_call_log_pipeline.py",
    REPO / "example_dags" / "ice_scheduled_agent_calls.py",
    REPO / "example_dags" / "ice_session_analytics.py",
    Path(__file__).parent / "dags" / "ice_deploy_on_kill.py",
)
#: Where Debian/Ubuntu's postgresql packages put the server binaries, one directory per version.
DEBIAN_POSTGRES_ROOT = Path("/usr/lib/postgresql")
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: asyncio debug mode in the triggerer: a blocked loop is then logged with the coroutine that blocked it.
TRIGGERER_ENV = {"PYTHONASYNCIODEBUG": "1"}
#: The emulator's call timings for the suite: people join after 1 s and talk for 25 s.
EMULATOR_ARGS = ("--user-join-delay", "1", "--call-duration", "25")


class DeploymentError(RuntimeError):
    """The stack could not be set up; the message says which step and where its log is."""


def find_postgres_bindir(
    which: Callable[[str], str | None] = shutil.which, debian_root: Path = DEBIAN_POSTGRES_ROOT
) -> Path | None:
    """The directory holding ``initdb``, ``postgres`` and ``pg_ctl``, or None when not installed.

    ``initdb`` on PATH wins (other distributions, Homebrew); else the newest Debian version
    directory. Debian's ``/usr/bin`` has only the client tools, so ``psql`` alone does not count.
    """
    on_path = which("initdb")
    if on_path:
        bindir = Path(on_path).resolve().parent
        if (bindir / "postgres").exists():
            return bindir
    versions = []
    if debian_root.is_dir():
        for candidate in debian_root.iterdir():
            if (candidate / "bin" / "initdb").exists() and (candidate / "bin" / "postgres").exists():
                with contextlib.suppress(ValueError):
                    versions.append((float(candidate.name), candidate / "bin"))
    return max(versions)[1] if versions else None


def ensure_postgres(
    run: Callable[..., Any] = subprocess.run,
    find: Callable[[], Path | None] = find_postgres_bindir,
    is_root: bool | None = None,
) -> Path:
    """The PostgreSQL server binaries, installing the distribution's ``postgresql`` package if missing."""
    found = find()
    if found is not None:
        return found
    if not (os.geteuid() == 0 if is_root is None else is_root) or not shutil.which("apt-get"):
        raise DeploymentError(
            "PostgreSQL is not installed and cannot be installed here (needs root and apt-get): "
            "install the postgresql package"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], check=True, env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"], check=True, env=env)
    found = find()
    if found is None:
        raise DeploymentError("apt-get installed postgresql, yet no initdb/postgres binaries were found")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; raise naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as error:  # not up yet
            last = error
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@dataclass
class Stack:
    """The running deployment: ports, paths, processes (by name) and a REST client."""

    root: Path
    venv: Path = field(init=False)
    pg_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    emulator_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: (PID, creation time) of every process started, so a PID reused by someone else is never signalled.
    started: list[tuple[int, float]] = field(default_factory=list)
    token: str | None = None
    #: What the DAGs folder holds, how the emulator behaves and settings added to the environment.
    dag_files: Sequence[Path] = DAG_FILES
    emulator_args: Sequence[str] = EMULATOR_ARGS
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.venv = self.root / "venv"
        for name in ("logs", "dags", "home", "data"):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    # -- environment ----------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    def env(self) -> dict[str, str]:
        """The deployment's environment: nothing of the test run's own Airflow settings leaks in."""
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW", "ICE_", "ALIBABA_CLOUD_", "PYTEST", "VIRTUAL_ENV"))
        }
        connection = {
            "conn_type": "alibaba_ice",
            "login": "EMULATORACCESSKEYID",
            "password": "emulator-access-key-secret",
            "extra": {"endpoint": self.emulator_url, "region": "cn-shanghai"},
        }
        return {
            **base,
            "PATH": f"{self.venv / 'bin'}{os.pathsep}{base.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.root / "home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.root / "dags"),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://airflow@127.0.0.1:{self.pg_port}/airflow",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt"),
            # A restarted triggerer takes over a dead one's triggers once its heartbeat is this old.
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW_CONN_ICE_DEFAULT": json.dumps(connection),
            "ICE_AGENT_ID": "deploy-agent",
            "ICE_DATA_DIR": str(self.root / "data"),
            # The analytics DAG starts today: unpausing it schedules nothing; the backfill runs the past.
            "ICE_ANALYTICS_START_DATE": time.strftime("%Y-%m-%d", time.gmtime()),
            "ICE_POKE_INTERVAL": "2",
            **self.extra_env,
        }

    def _secret(self, name: str) -> str:
        path = self.root / f".{name}"
        if not path.exists():
            path.write_text(secrets.token_hex(32))
        return path.read_text()

    # -- processes ------------------------------------------------------------------------------

    def start(
        self, name: str, argv: Sequence[str], user: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own session, output to ``logs/<name>.log``; remember its PID."""
        log = (self.root / "logs" / f"{name}.log").open("ab")
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**self.env(), **(env or {})},
            cwd=self.root,
            start_new_session=True,
            user=user,
        )
        log.close()
        self.processes[name] = process
        with contextlib.suppress(psutil.Error):
            self.started.append((process.pid, psutil.Process(process.pid).create_time()))
        return process

    def run(self, name: str, argv: Sequence[str], timeout: float = 240, user: str | None = None) -> str:
        """Run a command to completion (output logged); raise with the log's tail if it fails."""
        process = self.start(name, argv, user=user)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(name)
            raise DeploymentError(f"{name} did not finish in {timeout:.0f}s\n{self.tail(name)}") from None
        if code != 0:
            raise DeploymentError(f"{name} exited with {code}\n{self.tail(name)}")
        return (self.root / "logs" / f"{name}.log").read_text(errors="replace")

    def airflow(self, *args: str) -> list[str]:
        return [str(self.venv / "bin" / "airflow"), *args]

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.root / "logs" / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return f"--- {path} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, grace: float = 15) -> None:
        """Stop one process and everything it started (children may sit in their own groups)."""
        process = self.processes.pop(name, None)
        if process is not None and process.poll() is None:  # not reaped: the PID is still ours
            stop_tree(process.pid, sig, grace)

    def stop_all(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop(name, signal.SIGINT if name == "postgres" else signal.SIGTERM)
        for pid, created in self.started:  # anything still running that this stack started
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                if process.create_time() == created:
                    process.kill()

    # -- REST -----------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.api_url}{path}", data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=30) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def login(self) -> None:
        """A token from ``POST /auth/token`` with the simple auth manager's generated password."""
        passwords = self.root / "home" / "simple_auth_manager_passwords.json.generated"
        password = wait_for("the generated passwords file", lambda: json.loads(passwords.read_text()), 60)[
            "admin"
        ]
        answer = self.request("POST", "/auth/token", {"username": "admin", "password": password}, auth=False)
        self.token = answer["access_token"]

    def emulator_state(self, agent_id: str | None = None) -> dict[str, Any]:
        query = f"?agent_id={agent_id}" if agent_id else ""
        with urllib.request.urlopen(f"{self.emulator_url}/_emulator/state{query}", timeout=30) as response:
            return dict(json.loads(response.read()))


def stop_tree(pid: int, sig: signal.Signals = signal.SIGTERM, grace: float = 15) -> None:
    """Signal ``pid`` and all its descendants (by PID), then kill whatever outlived ``grace``."""
    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for member in family:
        with contextlib.suppress(psutil.Error):
            member.send_signal(sig)
    _, alive = psutil.wait_procs(family, timeout=grace)
    for member in alive:
        with contextlib.suppress(psutil.Error):
            member.kill()
    psutil.wait_procs(alive, timeout=5)


def build_venv(stack: Stack) -> None:
    """Build the provider's wheel and install it (not editable) with apache-airflow[postgres]."""
    uv = str(Path(sys.executable).parent / "uv")
    dist = stack.root / "dist"
    stack.run("build-wheel", [uv, "build", "--wheel", "--out-dir", str(dist), str(REPO)])
    (wheel,) = dist.glob("airflow_provider_ice-*.whl")
    stack.run("venv", [uv, "venv", "--quiet", "--python", sys.executable, str(stack.venv)])
    stack.run(
        "install",
        [uv, "pip", "install", "--quiet", "--python", str(stack.venv / "bin" / "python"),
         f"apache-airflow[postgres]=={AIRFLOW_VERSION}", str(wheel)],
        timeout=420,
    )  # fmt: skip


def start_postgres(stack: Stack, bindir: Path) -> None:
    """A fresh cluster in ``root/pg`` on a free port; as root it runs as the ``postgres`` user."""
    user = "postgres" if os.geteuid() == 0 else None
    data = stack.root / "pg"
    data.mkdir()
    if user:
        stack.root.chmod(0o755)
        shutil.chown(data, user)
    stack.run(
        "initdb",
        [str(bindir / "initdb"), "-D", str(data), "-U", "airflow", "--auth=trust", "-E", "UTF8", "--no-sync"],
        user=user,
    )
    # Durability is pointless for a throwaway cluster; no Unix socket, TCP on 127.0.0.1 only.
    stack.start(
        "postgres",
        [str(bindir / "postgres"), "-D", str(data), "-p", str(stack.pg_port),
         "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
        user=user,
    )  # fmt: skip

    def accepts() -> bool:
        with socket.create_connection(("127.0.0.1", stack.pg_port), timeout=1):
            return True

    wait_for("PostgreSQL to accept connections", accepts, 60, 0.2)
    psql = [
        str(bindir / "psql"),
        "-h",
        "127.0.0.1",
        "-p",
        str(stack.pg_port),
        "-U",
        "airflow",
        "-d",
        "postgres",
    ]
    wait_for(
        "PostgreSQL to answer queries",
        lambda: subprocess.run([*psql, "-c", "select 1"], capture_output=True).returncode == 0,
        60,
        0.3,
    )
    stack.run("createdb", [*psql, "-c", "CREATE DATABASE airflow"])


def start_airflow(stack: Stack) -> None:
    """Migrate, then api-server, scheduler, dag-processor, triggerer and the emulator."""
    for dag_file in stack.dag_files:
        shutil.copy(dag_file, stack.root / "dags" / dag_file.name)
    stack.run("db-migrate", stack.airflow("db", "migrate"), timeout=300)
    stack.start(
        "emulator",
        [str(stack.venv / "bin" / "airflow-ice-emulator"), "--port", str(stack.emulator_port),
         *stack.emulator_args],
    )  # fmt: skip
    stack.start("api-server", stack.airflow("api-server", "--port", str(stack.api_port), "--workers", "1"))
    for component in COMPONENTS[1:]:
        stack.start(
            component, stack.airflow(component), env=TRIGGERER_ENV if component == "triggerer" else None
        )
    wait_for("the emulator", lambda: stack.emulator_state() is not None, 60)
    wait_for("the api-server", lambda: stack.request("GET", "/api/v2/monitor/health", auth=False), 180, 1)
    stack.login()


@contextlib.contextmanager
def deployment(root: Path, **options: Any) -> Iterator[Stack]:
    """The whole stack, up; stopped (every process, by PID) on the way out, whatever happened.

    ``options`` are :class:`Stack` fields (``dag_files``, ``emulator_args``, ``extra_env``).
    """
    stack = Stack(root, **options)
    try:
        bindir = ensure_postgres()
        start_postgres(stack, bindir)
        build_venv(stack)
        start_airflow(stack)
        yield stack
    finally:
        stack.stop_all()
