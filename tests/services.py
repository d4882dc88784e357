"""Real services for the tests: an `mlflow server` process, a PostgreSQL cluster, a one-node SLURM cluster
with munge, and the rules for services that may be absent.

A test that needs a service (PostgreSQL, SLURM, chromium) calls :func:`unavailable` when it is not on the
machine: it skips with the reason on a user's machine and fails in CI (``$NMF_LAB_REQUIRE_SERVICES=1``, set by
``.ci/run``, which installs them).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REQUIRE_SERVICES_ENV = "NMF_LAB_REQUIRE_SERVICES"
"""Set to 1 (CI does): a test whose service is absent fails instead of skipping."""


def unavailable(reason: str) -> None:
    """Skip the test with ``reason``, or fail it when ``$NMF_LAB_REQUIRE_SERVICES=1``."""
    if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        pytest.fail(f"{reason} (and {REQUIRE_SERVICES_ENV}=1 requires it)")
    pytest.skip(reason)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(uri: str, process: subprocess.Popen, log_path: Path, timeout: float = 120) -> None:
    """Wait until ``GET uri/health`` answers 200; fail with the server's log if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited: {log_path.read_text()[-3000:]}")
        try:
            if requests.get(f"{uri}/health", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    pytest.fail(f"mlflow server did not answer in {timeout:.0f} s: {log_path.read_text()[-3000:]}")


@contextmanager
def mlflow_server(
    root: Path,
    backend_store_uri: str,
    *,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """A real ``mlflow server`` on a free loopback port over ``backend_store_uri``, its artifacts proxied from
    ``root/artifacts``; yields its URI. It runs in its own session and is stopped by its process group.

    One worker and no job execution: ready in about 6 s, 2 processes instead of about 15.
    """
    port = free_port()
    log_path = root / f"mlflow-server-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--backend-store-uri",
                backend_store_uri,
                "--artifacts-destination",
                str(root / "artifacts"),
                "--workers",
                "1",
                *extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})},
            start_new_session=True,
        )
        uri = f"http://127.0.0.1:{port}"
        try:
            wait_for_health(uri, process, log_path)
            yield uri
        finally:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


CHROMIUM = "/usr/bin/chromium"
"""Debian's chromium (``apt-get install chromium``): Playwright's own browser download is not needed."""
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
SHOTS = Path(os.environ.get("NMF_LAB_SHOTS", "/tmp/shots"))
"""Where browser tests copy their screenshots for a person to look at."""


@contextmanager
def chromium():
    """Debian's chromium driven by Playwright for Python (a ``Browser``); skips (fails in CI) when either is
    absent. Pages render a few seconds after they load: wait for selectors, not for the load event."""
    if not Path(CHROMIUM).is_file():
        unavailable(f"chromium is not installed at {CHROMIUM}: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed: pip install playwright")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page, folder: Path, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot ``name``.png of ``page`` (the whole page, or the window for an app that scrolls inside
    it) in ``folder`` (a test's tmp dir) and copy it to :data:`SHOTS`."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / path.name).write_bytes(path.read_bytes())
    return path


@contextmanager
def service_dir() -> Iterator[Path]:
    """A fresh temporary folder that service users (postgres, munge) can enter: mode 755, unlike pytest's
    ``tmp_path`` (under a 0700 folder). Removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="nmf-lab-service-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _as_user(user: str, *command: str) -> list[str]:
    """``command`` run as ``user`` when we are root (postgres and munged refuse root), else as ourselves."""
    return ["runuser", "-u", user, "--", *command] if os.geteuid() == 0 else list(command)


def _run(command: Sequence[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=120, **kwargs)
    if done.returncode != 0:
        pytest.fail(f"{what} failed ({' '.join(command)}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL cluster with the role ``user`` (password ``password``), reached over TCP."""

    port: int
    user: str
    password: str

    def uri(self, database: str) -> str:
        """The SQLAlchemy URI of ``database`` with the psycopg2 driver (a bare ``postgresql://`` means psycopg 3
        to SQLAlchemy 2.1)."""
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"


@contextmanager
def postgres(databases: Sequence[str]) -> Iterator[Postgres]:
    """A real PostgreSQL cluster (Debian's ``postgresql``) in a temporary folder, listening on a free loopback
    port, with ``databases`` owned by one role; stopped (``pg_ctl stop``) and removed at the end. About 1 s."""
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
    if not initdb[-1]:
        unavailable("PostgreSQL is not installed: apt-get install postgresql")
    if os.geteuid() == 0 and _missing_user("postgres"):
        unavailable("the PostgreSQL tests run postgres as the user 'postgres', which does not exist")
    bin_dir = Path(initdb[-1]).parent
    with service_dir() as root:
        data, sockets = root / "pg", root / "sock"
        for folder in (data, sockets):
            folder.mkdir()
            if os.geteuid() == 0:
                shutil.chown(folder, "postgres")
        options = ["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"]
        _run(_as_user("postgres", str(bin_dir / "initdb"), "-D", str(data), *options), "initdb")
        port = free_port()
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg_ctl = _as_user("postgres", str(bin_dir / "pg_ctl"), "-D", str(data))
        _run([*pg_ctl, "-l", str(data / "server.log"), "-w", "-o", options, "start"], "pg_ctl start")
        try:
            server = Postgres(port=port, user="mlf", password="mlf-test-pw")
            statements = [f"CREATE USER {server.user} PASSWORD '{server.password}'"]
            statements += [f"CREATE DATABASE {name} OWNER {server.user}" for name in databases]
            psql = _as_user("postgres", str(bin_dir / "psql"), "-h", str(sockets), "-p", str(port), "-U", "postgres")
            _run([*psql, *(arg for statement in statements for arg in ("-c", statement))], "psql")
            yield server
        finally:
            subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True, timeout=60)


def _missing_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return True
    return False


SLURM_DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol")


@contextmanager
def slurm_cluster() -> Iterator[dict[str, str]]:
    """A real one-node SLURM cluster (Debian's ``slurm-wlm`` and ``munge``) on this machine: munged with its own
    key and socket, slurmctld and slurmd on free ports, one partition ``debug`` with every core. Yields the
    environment its clients need (``SLURM_CONF``); submitit and its jobs inherit it. Stopped with ``scontrol
    shutdown`` and munged's pid at the end. Needs root (slurmd runs jobs as their user)."""
    missing = [name for name in SLURM_DAEMONS if shutil.which(name) is None]
    if missing:
        unavailable(f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        unavailable("the SLURM tests start slurmd, which must run as root")
    with service_dir() as root:
        munge = root / "munge"
        munge.mkdir()
        (munge / "munge.key").write_bytes(os.urandom(1024))
        (munge / "munge.key").chmod(0o400)
        shutil.chown(munge, "munge", "munge")
        shutil.chown(munge / "munge.key", "munge", "munge")
        socket_path = munge / "munge.socket.2"
        files = [f"--key-file={munge / 'munge.key'}"]
        files += [f"--{kind}-file={munge / ('munged.' + kind)}" for kind in ("pid", "log", "seed")]
        _run(_as_user("munge", "munged", f"--socket={socket_path}", *files), "munged")
        try:
            slurm = root / "slurm"
            for folder in ("state", "spool", "log"):
                (slurm / folder).mkdir(parents=True)
            conf = slurm / "slurm.conf"
            conf.write_text(_slurm_conf(slurm, socket_path))
            env = {"SLURM_CONF": str(conf)}
            full_env = {**os.environ, **env}
            _run(["slurmctld", "-f", str(conf)], "slurmctld", env=full_env)
            try:
                _run(["slurmd", "-f", str(conf)], "slurmd", env=full_env)
                _wait_for_idle_node(full_env, slurm)
                yield env
            finally:
                subprocess.run(["scontrol", "shutdown"], env=full_env, capture_output=True, timeout=60)
                for pid_file in (slurm / "slurmd.pid", slurm / "slurmctld.pid"):
                    _wait_for_exit(pid_file)
        finally:
            _stop_by_pid_file(munge / "munged.pid")


def _slurm_conf(slurm: Path, munge_socket: Path) -> str:
    """slurm.conf for one node: this host (``slurmd -C`` describes it), 10 % of its memory held back."""
    node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
    node = re.sub(r"RealMemory=(\d+)", lambda m: f"RealMemory={int(m.group(1)) * 9 // 10}", node)
    host = node.split()[0].removeprefix("NodeName=")
    return f"""\
ClusterName=nmflab
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={slurm / "state"}
SlurmdSpoolDir={slurm / "spool"}/%n
SlurmctldPidFile={slurm / "slurmctld.pid"}
SlurmdPidFile={slurm / "slurmd.pid"}
SlurmctldLogFile={slurm / "log" / "slurmctld.log"}
SlurmdLogFile={slurm / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
KillWait=5
MinJobAge=300
{node} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _wait_for_idle_node(env: Mapping[str, str], slurm: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=30)
        if done.returncode == 0 and done.stdout.strip() == "idle":
            return
        time.sleep(0.2)
    logs = "".join(path.read_text()[-1500:] for path in sorted((slurm / "log").glob("*.log")))
    pytest.fail(f"the SLURM node did not become idle in {timeout:.0f} s: {logs}")


def _pid_in(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _wait_for_exit(pid_file: Path, timeout: float = 30) -> None:
    """Wait until the process named by ``pid_file`` has exited; SIGKILL it after ``timeout`` seconds."""
    pid = _pid_in(pid_file)
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def _stop_by_pid_file(pid_file: Path) -> None:
    pid = _pid_in(pid_file)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        _wait_for_exit(pid_file)


BASIC_AUTH_INI = """\
[mlflow]
default_permission = READ
database_uri = {database_uri}
admin_username = {admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = 60
"""


@dataclass(frozen=True)
class BasicAuthServer:
    """A running ``mlflow server --app-name basic-auth`` over PostgreSQL: its URI, the folder that holds its
    artifacts (``root / "artifacts"``), the admin's and the users' credentials (name -> password)."""

    uri: str
    root: Path
    admin: tuple[str, str]
    users: Mapping[str, str]


@contextmanager
def basic_auth_server(users: Mapping[str, str], admin: tuple[str, str] = ("admin", "admin-pw-for-tests")):
    """The team setup of the README: PostgreSQL with the databases ``mlflow`` (runs) and ``mlflow_auth`` (users,
    permissions), an `mlflow server --app-name basic-auth` over them (``default_permission = READ``: everyone
    may read what they did not create), and ``users`` created through the auth REST API by the admin. Skips
    (fails in CI) without PostgreSQL, psycopg2 or Flask-WTF. About 8 s."""
    import importlib.util

    missing = [name for name in ("psycopg2", "flask_wtf") if importlib.util.find_spec(name) is None]
    if missing:
        unavailable(f"{', '.join(missing)} missing: pip install 'mlflow[auth]' psycopg2-binary (the test extra)")
    with postgres(["mlflow", "mlflow_auth"]) as database, service_dir() as root:
        ini = root / "basic_auth.ini"
        ini.write_text(BASIC_AUTH_INI.format(database_uri=database.uri("mlflow_auth"), admin=admin[0]))
        env = {
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-random-secret-for-the-tests",
            "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1],
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        }
        with mlflow_server(root, database.uri("mlflow"), extra_args=["--app-name", "basic-auth"], env=env) as uri:
            for user, password in users.items():
                response = requests.post(
                    f"{uri}/api/2.0/mlflow/users/create", json={"username": user, "password": password}, auth=admin
                )
                assert response.status_code == 200, response.text
            yield BasicAuthServer(uri=uri, root=root, admin=admin, users=dict(users))
