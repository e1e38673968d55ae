"""How `swarm` commands find the running system: explicit environment, then state.json, then an error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.swarm.state import (
    NoSystemFound,
    ProcessState,
    ServerState,
    ServiceState,
    SwarmState,
    default_data_dir,
    gateway_url,
    load_state,
    resolve_settings,
    save_state,
    state_path,
)


def recorded_state(data_dir: Path, **overrides: object) -> SwarmState:
    values: dict[str, object] = {
        "data_dir": str(data_dir),
        "keys_dir": str(data_dir / "keys"),
        "redis": ServerState("redis://127.0.0.1:7001/0", embedded=True, port=7001, pid=None),
        "postgres": ServerState("postgresql://postgres@127.0.0.1:7002/postgres", embedded=True, port=7002),
        "services": {
            "auth_svc": ServiceState(
                "postgresql://postgres@127.0.0.1:7002/taskswarm_auth",
                [
                    ProcessState("auth_svc.1", "http://127.0.0.1:7101", 7101),
                    ProcessState("auth_svc.2", "http://127.0.0.1:7102", 7102),
                ],
            )
        },
        "gateway": ProcessState("gateway.1", "http://127.0.0.1:7000", 7000),
        "status": "running",
    }
    values.update(overrides)
    state = SwarmState(**values)  # type: ignore[arg-type]
    save_state(data_dir, state)
    return state


def test_values_come_from_the_state_file_when_the_environment_is_silent(tmp_path: Path) -> None:
    recorded_state(tmp_path)

    settings = resolve_settings("auth_svc", tmp_path, env={}, require=("redis_url", "database_url"))

    assert settings.service_name == "auth_svc"
    assert settings.redis_url == "redis://127.0.0.1:7001/0"
    assert settings.database_url == "postgresql://postgres@127.0.0.1:7002/taskswarm_auth"
    assert settings.jwt_public_key_file == str(tmp_path / "keys" / "jwt_public.pem")
    assert settings.auth_url == ("http://127.0.0.1:7101", "http://127.0.0.1:7102")


def test_explicit_environment_variables_win_over_the_state_file(tmp_path: Path) -> None:
    recorded_state(tmp_path)
    env = {"REDIS_URL": "redis://elsewhere:6379/2", "DATABASE_URL": "postgresql://db.example/auth"}

    settings = resolve_settings("auth_svc", tmp_path, env=env, require=("redis_url", "database_url"))

    assert settings.redis_url == "redis://elsewhere:6379/2"
    assert settings.database_url == "postgresql://db.example/auth"
    assert settings.auth_url == ("http://127.0.0.1:7101", "http://127.0.0.1:7102")  # not overridden


def test_keyword_overrides_win_over_both(tmp_path: Path) -> None:
    recorded_state(tmp_path)

    settings = resolve_settings(None, tmp_path, env={"REDIS_URL": "redis://env:1/0"}, redis_url="redis://kw:2/0")

    assert settings.redis_url == "redis://kw:2/0"


def test_without_state_or_environment_a_required_value_is_an_error_that_says_what_to_do(
    tmp_path: Path,
) -> None:
    with pytest.raises(NoSystemFound, match=r"swarm up.*REDIS_URL"):
        resolve_settings(None, tmp_path / "nothing-here", env={})

    settings = resolve_settings(None, tmp_path / "nothing-here", env={"REDIS_URL": "redis://set:6379/0"})
    assert settings.redis_url == "redis://set:6379/0"


def test_a_service_the_state_does_not_know_has_no_database(tmp_path: Path) -> None:
    recorded_state(tmp_path)

    with pytest.raises(NoSystemFound, match="DATABASE_URL"):
        resolve_settings("comment_svc", tmp_path, env={}, require=("database_url",))


def test_the_data_dir_defaults_to_swarm_data_dir_then_dot_swarm(tmp_path: Path) -> None:
    assert default_data_dir({}) == Path(".swarm")
    assert default_data_dir({"SWARM_DATA_DIR": str(tmp_path)}) == tmp_path
    recorded_state(tmp_path)
    settings = resolve_settings(None, env={"SWARM_DATA_DIR": str(tmp_path)})
    assert settings.redis_url == "redis://127.0.0.1:7001/0"


def test_the_gateway_url_comes_from_the_environment_or_the_state(tmp_path: Path) -> None:
    recorded_state(tmp_path)
    assert gateway_url(tmp_path, env={}) == "http://127.0.0.1:7000"
    assert gateway_url(tmp_path, env={"GATEWAY_URL": "http://gw.example/"}) == "http://gw.example"
    with pytest.raises(NoSystemFound, match="GATEWAY_URL"):
        gateway_url(tmp_path / "nothing-here", env={})


def test_a_state_file_round_trips_and_a_damaged_one_reads_as_absent(tmp_path: Path) -> None:
    state = recorded_state(tmp_path)
    assert load_state(tmp_path) == state

    state_path(tmp_path).write_text('{"data_dir": ')
    assert load_state(tmp_path) is None


def test_a_system_is_running_only_while_its_supervisor_lives(tmp_path: Path) -> None:
    me = recorded_state(tmp_path, supervisor_pid=os.getpid(), supervisor_cmdline=None)
    assert me.is_running()
    assert not recorded_state(tmp_path, supervisor_pid=os.getpid(), status="stopped").is_running()

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert not recorded_state(tmp_path, supervisor_pid=int(finished.stdout)).is_running()
    # Same pid, different program: a reused pid is not our supervisor.
    assert not recorded_state(tmp_path, supervisor_pid=os.getpid(), supervisor_cmdline="no such program").is_running()
