"""Real services for the tests: an `mlflow server` process and the rules for services that may be absent.

A test that needs a service (PostgreSQL, SLURM, chromium) calls :func:`unavailable` when it is not on the
machine: it skips with the reason on a user's machine and fails in CI (``$NMF_LAB_REQUIRE_SERVICES=1``, set by
``.ci/run``, which installs them).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
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
