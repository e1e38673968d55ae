"""`swarm up` end to end: the real command, its embedded servers, every service and the gateway.

Run twice on one data folder: what the first run stored (a registered user) must still be there in
the second, and each run must stop cleanly on SIGINT / SIGTERM with nothing left running.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from common.swarm.embedded import free_port
from common.swarm.state import SwarmState, load_state, pid_alive
from tests.common.swarm.conftest import REPO_ROOT, http, wait_until
from tests.conftest import Servers

pytestmark = pytest.mark.e2e

SWARM = Path(sys.executable).parent / "swarm"
# Variables that would point `swarm up` (or its children) at servers other than its own.
_FOREIGN = ("REDIS_URL", "DATABASE_URL", "LOG_FORMAT", "SWARM_DATA_DIR", "AUTH_URL", "PORT", "HOST")


def own_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in _FOREIGN}


class SwarmUp:
    """`swarm up` as a subprocess whose output is collected line by line."""

    def __init__(self, data_dir: Path, port: int, *args: str, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [str(SWARM), "up", "--data-dir", str(data_dir), "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**own_env(), **(env or {})},
            cwd=REPO_ROOT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"swarm up exited with {self.process.returncode}:\n{self.output}")
            return any("ready; press Ctrl-C" in line for line in self.lines)

        wait_until(ready, timeout, "swarm up to print that it is ready")

    def stop(self, signum: int, timeout: float = 40) -> int:
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        self._reader.join(5)
        return code


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "swarm-data"


@pytest.fixture
def gateway_port() -> int:
    return free_port()


def running_state(data_dir: Path) -> SwarmState:
    state = load_state(data_dir)
    assert state is not None and state.status == "running", state
    return state


def assert_all_gone(state: SwarmState, data_dir: Path) -> None:
    pids = [p.pid for p in state.processes()] + [state.redis.pid]
    assert all(pid is not None for pid in pids)
    wait_until(lambda: not any(pid_alive(pid) for pid in pids if pid), 10, "every child to be gone")
    assert not (data_dir / "postgres" / "pgdata" / "postmaster.pid").exists(), "PostgreSQL still running"
    stopped = load_state(data_dir)
    assert stopped is not None and stopped.status == "stopped"
    assert all(p.pid is None for p in stopped.processes()) and stopped.redis.pid is None


def test_swarm_up_runs_the_system_stops_cleanly_and_keeps_its_data(data_dir: Path, gateway_port: int) -> None:
    username = f"u{uuid.uuid4().hex[:10]}"
    credentials = {
        "username": username,
        "email": f"{username}@example.com",
        "password": "correct horse battery",
    }

    first = SwarmUp(data_dir, gateway_port)
    try:
        first.wait_ready()
        state = running_state(data_dir)
        assert state.gateway is not None and state.gateway.url == f"http://127.0.0.1:{gateway_port}"
        assert state.redis.embedded and state.postgres.embedded
        assert state.services["auth_svc"].database_url.endswith("/taskswarm_auth")  # type: ignore[union-attr]
        assert state.gateway.url in first.output  # the table of URLs
        assert re.search(r"^auth_svc\.1 +\| \{", first.output, re.MULTILINE), first.output
        assert http("GET", f"{state.gateway.url}/health")[0] == 200

        status, body = http("POST", f"{state.gateway.url}/api/v1/auth/register", credentials)
        assert status == 201, body

        second = subprocess.run(
            [str(SWARM), "up", "--data-dir", str(data_dir), "--port", str(free_port())],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=REPO_ROOT,
            env=own_env(),
        )
        assert second.returncode == 1 and "already running" in second.stdout
    finally:
        code = first.stop(signal.SIGINT)
    assert code == 0, first.output
    assert_all_gone(state, data_dir)

    again = SwarmUp(data_dir, gateway_port)
    try:
        again.wait_ready()
        restarted = running_state(data_dir)
        assert restarted.redis.port == state.redis.port and restarted.postgres.port == state.postgres.port
        login = {"username": username, "password": credentials["password"]}
        status, body = http("POST", f"http://127.0.0.1:{gateway_port}/api/v1/auth/login", login)
        assert status == 200, body
        # Other commands find the running system through its state file.
        promote = subprocess.run(
            [str(SWARM), "users", "promote", username, "--role", "admin", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=REPO_ROOT,
            env=own_env(),
        )
        assert promote.returncode == 0, promote.stderr
        assert f"{username} is now admin" in promote.stdout
    finally:
        code = again.stop(signal.SIGTERM)
    assert code == 0, again.output
    assert_all_gone(restarted, data_dir)


def test_a_swarm_killed_without_warning_is_cleaned_up_by_the_next_one(data_dir: Path, gateway_port: int) -> None:
    killed = SwarmUp(data_dir, gateway_port)
    killed.wait_ready()
    orphans = running_state(data_dir)
    killed.stop(signal.SIGKILL)  # no chance to stop its children or servers
    assert all(pid_alive(p.pid) for p in orphans.processes() if p.pid)

    successor = SwarmUp(data_dir, gateway_port)
    try:
        successor.wait_ready()
        current = running_state(data_dir)
        assert not any(pid_alive(p.pid) for p in orphans.processes() if p.pid)
        assert orphans.redis.pid is not None and not pid_alive(orphans.redis.pid)
        assert http("GET", f"http://127.0.0.1:{gateway_port}/health")[0] == 200
    finally:
        code = successor.stop(signal.SIGINT)
    assert code == 0, successor.output
    assert_all_gone(current, data_dir)


def test_swarm_up_uses_external_servers_when_given_and_leaves_them_running(
    data_dir: Path, gateway_port: int, servers: Servers
) -> None:
    run = SwarmUp(
        data_dir, gateway_port, "--database-url", servers.postgres.url(), env={"REDIS_URL": servers.redis.url}
    )
    try:
        run.wait_ready()
        state = running_state(data_dir)
        assert state.redis.url == servers.redis.url and not state.redis.embedded
        assert state.postgres.url == servers.postgres.url() and not state.postgres.embedded
        assert state.services["auth_svc"].database_url == servers.postgres.url("taskswarm_auth")
        assert not (data_dir / "redis").exists() and not (data_dir / "postgres").exists()
    finally:
        code = run.stop(signal.SIGINT)
    assert code == 0, run.output
    assert servers.redis.process is not None and servers.redis.process.poll() is None
    assert servers.postgres.running()
