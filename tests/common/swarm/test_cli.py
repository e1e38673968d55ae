"""The `swarm` command line itself: argument parsing, mounting service groups, `swarm status`."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from common.swarm.cli import app, mount_groups, parse_replicas
from common.swarm.state import ProcessState, ServerState, SwarmState, save_state

sample_group = typer.Typer()


@sample_group.command()
def hello() -> None:
    typer.echo("hello from a service group")


def test_replicas_accept_repeated_and_comma_separated_values_and_short_names() -> None:
    assert parse_replicas(["comment_svc=3", "project=2,auth_svc=1"]) == {
        "comment_svc": 3,
        "project_svc": 2,
        "auth_svc": 1,
    }
    assert parse_replicas([]) == {}


@pytest.mark.parametrize("value", ["comment_svc", "billing_svc=2", "comment_svc=0", "comment_svc=many", "gateway=2"])
def test_replicas_refuse_what_cannot_be_run(value: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_replicas([value])


def test_groups_are_mounted_only_when_their_module_is_importable() -> None:
    target = typer.Typer()

    @target.command()
    def noop() -> None:
        """Keeps `target` a group."""

    mounted = mount_groups(
        target, (("sample", "tests.common.swarm.test_cli:sample_group"), ("ghost", "ghost_svc_missing.cli:app"))
    )

    assert mounted == ["sample"]
    result = CliRunner().invoke(target, ["sample", "hello"])
    assert result.exit_code == 0, result.output
    assert "hello from a service group" in result.output


def test_status_shows_the_recorded_system_and_that_it_is_not_running(tmp_path: Path) -> None:
    save_state(
        tmp_path,
        SwarmState(
            data_dir=str(tmp_path),
            keys_dir=str(tmp_path / "keys"),
            redis=ServerState("redis://127.0.0.1:7001/0", embedded=True),
            postgres=ServerState("postgresql://postgres@127.0.0.1:7002/postgres", embedded=False),
            gateway=ProcessState("gateway.1", "http://127.0.0.1:7000", 7000),
            status="stopped",
        ),
    )

    result = CliRunner().invoke(app, ["status", "--data-dir", str(tmp_path)])

    assert result.exit_code == 3, result.output
    assert "http://127.0.0.1:7000" in result.output
    assert "postgres (external)" in result.output
    assert "not running" in result.output


def test_status_without_a_recorded_system_says_how_to_start_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "swarm up" in result.output
