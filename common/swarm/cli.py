"""The `swarm` command line: `swarm up`, `swarm status`, and the groups services contribute.

Kept thin: `up` is `common.swarm.supervisor.Swarm` plus signal handling and a table of URLs. Groups such as
`swarm users` live with the service that owns the data (`auth_svc/cli.py`), declared by its manifest and
mounted here only when its package is installed, so common never imports a service package at import
time. The stream-inspection views (`swarm streams`, `swarm dlq`, `swarm trace`) live in
`common/swarm/streams_cli/`, the convergence check (`swarm check`) in `common/swarm/check_cli.py`, replica
rebuild (`swarm republish`) in `common/swarm/republish_cli.py` and `swarm demo` in
`common/swarm/demo_cli.py`; only the command that runs is mounted, so `swarm up` does not import them.
"""

from __future__ import annotations

import importlib
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from common.contracts import topology
from common.swarm.procs import LogPrinter
from common.swarm.state import DEFAULT_DATA_DIR, SwarmState, load_state, state_path
from common.swarm.supervisor import StartupAborted, StartupError, Swarm, SwarmConfig

# common's own groups (group name, "module:Typer app"), mounted in this order after the services' groups
# (their manifests' `cli`), when the module is importable.
SUBCOMMAND_GROUPS: tuple[tuple[str, str], ...] = (
    ("streams", "common.swarm.streams_cli:streams_app"),
    ("dlq", "common.swarm.streams_cli:dlq_app"),
)
# (command name, "module:function"): single commands, mounted like the groups.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("trace", "common.swarm.streams_cli:trace"),
    ("check", "common.swarm.check_cli:check"),
    ("republish", "common.swarm.republish_cli:republish_command"),
    ("demo", "common.swarm.demo_cli:demo"),
)

OWN_COMMANDS = frozenset({"up", "status", *(name for name, _ in (*SUBCOMMAND_GROUPS, *COMMANDS))})

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="SWARM_DATA_DIR",
        help="Folder of the system started by `swarm up` (its servers' data and state.json).",
    ),
]


def parse_replicas(values: list[str]) -> dict[str, int]:
    """`["comment_svc=3", "project=2,notif_svc=2"]` → `{"comment_svc": 3, "project_svc": 2, ...}`."""
    known = {spec.name for spec in topology.SERVICES}
    counts: dict[str, int] = {}
    for item in (part.strip() for value in values for part in value.split(",")):
        if not item:
            continue
        name, sep, number = item.partition("=")
        name = name.strip()
        if name not in known and f"{name}_svc" in known:
            name = f"{name}_svc"
        if not sep or name not in known:
            raise typer.BadParameter(f"{item!r}: expected SERVICE=N with SERVICE one of {', '.join(sorted(known))}")
        try:
            count = int(number)
        except ValueError:
            raise typer.BadParameter(f"{item!r}: N must be a whole number") from None
        if count < 1:
            raise typer.BadParameter(f"{item!r}: N must be at least 1")
        counts[name] = count
    return counts


def urls_table(state: SwarmState) -> Table:
    table = Table(title="Taskswarm", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("where")
    table.add_column("metrics (Prometheus)")
    if state.gateway:
        table.add_row("gateway", state.gateway.url, state.gateway.metrics_url or "")
        for worker in state.more_gateway_workers:  # on the gateway's port; metrics of their own
            table.add_row(worker.label, "", worker.metrics_url or "")
    for service in state.services.values():
        for replica in service.replicas:
            table.add_row(replica.label, replica.url, replica.metrics_url or "")
    table.add_row("redis" + ("" if state.redis.embedded else " (external)"), state.redis.url)
    table.add_row("postgres" + ("" if state.postgres.embedded else " (external)"), state.postgres.url)
    table.add_row("data", state.data_dir)
    return table


app = typer.Typer(
    name="swarm",
    help="Run and inspect Taskswarm.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def up(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    port: Annotated[int, typer.Option("--port", help="Port of the gateway.")] = 8080,
    replicas: Annotated[
        list[str] | None,
        typer.Option("--replicas", "-r", help="Processes per service, SERVICE=N (repeatable)."),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option("--redis-url", envvar="REDIS_URL", help="Use this Redis instead of an embedded one."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="DATABASE_URL",
            help="Admin DSN of a PostgreSQL to use instead of an embedded one (one database per service).",
        ),
    ] = None,
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for every process to be ready.")] = 90.0,
    gateway_workers: Annotated[
        int, typer.Option("--gateway-workers", min=1, help="Gateway processes sharing its port (SO_REUSEPORT).")
    ] = 1,
) -> None:
    """Run the whole system on this machine until Ctrl-C (a second Ctrl-C forces)."""
    config = SwarmConfig(
        data_dir=data_dir,
        gateway_port=port,
        gateway_workers=gateway_workers,
        replicas=parse_replicas(replicas or []),
        redis_url=redis_url or None,
        postgres_url=database_url or None,
        ready_timeout_s=ready_timeout,
        restart_crashed=True,
    )
    printer = LogPrinter()
    swarm = Swarm(config, printer)
    _handle_stop_signals(swarm, printer)
    try:
        state = swarm.start()
    except StartupAborted:
        printer.note("stopped before the system was ready")
        raise typer.Exit(0) from None
    except StartupError as exc:
        printer.note(f"start-up failed: {exc}")
        if exc.tail:
            printer.note(f"last lines of {exc.label}:")
            for line in exc.tail:
                printer.line(exc.label or "?", (exc.label or "?").rpartition(".")[0], line)
        raise typer.Exit(1) from None
    Console(soft_wrap=True).print(urls_table(state))
    printer.note("ready; press Ctrl-C to stop")
    swarm.supervise()
    printer.note("stopping")
    swarm.stop()
    printer.note("stopped")


def _handle_stop_signals(swarm: Swarm, printer: LogPrinter) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        if swarm.stop_requested:
            printer.note("forcing stop")
            swarm.force_stop()
        else:
            printer.note(f"received {signal.Signals(signum).name}; stopping gracefully (Ctrl-C again to force)")
            swarm.request_stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@app.command()
def status(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print state.json as recorded.")] = False,
) -> None:
    """Show what `swarm up` started in the data folder, and whether it is running."""
    state = load_state(data_dir)
    if state is None:
        typer.echo(f"nothing recorded: {state_path(data_dir)} does not exist (start the system with `swarm up`)")
        raise typer.Exit(1)
    if as_json:
        typer.echo(state.to_json())
        return
    Console(soft_wrap=True).print(urls_table(state))
    running = state.is_running()
    typer.echo(f"status: {'running (pid ' + str(state.supervisor_pid) + ')' if running else 'not running'}")
    raise typer.Exit(0 if running else 3)


def mount_service_groups(target: typer.Typer, only: str | None = None) -> list[str]:
    """Add the command groups the manifests of the services here declare (only `only`, when given)."""
    mounted = []
    for spec in topology.services():
        for name, load in spec.manifest().cli.items():
            if only is None or name == only:
                target.add_typer(load(), name=name)
                mounted.append(name)
    return mounted


def mount_groups(
    target: typer.Typer, groups: tuple[tuple[str, str], ...] = SUBCOMMAND_GROUPS, only: str | None = None
) -> list[str]:
    """Add each group whose module is importable (only `only`, when given); return the names mounted."""
    mounted = []
    for name, ref in groups:
        if only is not None and name != only:
            continue
        module_name, _, attribute = ref.partition(":")
        if not topology.module_available(module_name):
            continue
        target.add_typer(getattr(importlib.import_module(module_name), attribute), name=name)
        mounted.append(name)
    return mounted


def mount_commands(
    target: typer.Typer, commands: tuple[tuple[str, str], ...] = COMMANDS, only: str | None = None
) -> list[str]:
    """Add each command whose module is importable (only `only`, when given); return the names mounted."""
    mounted = []
    for name, ref in commands:
        if only is not None and name != only:
            continue
        module_name, _, attribute = ref.partition(":")
        if not topology.module_available(module_name):
            continue
        target.command(name)(getattr(importlib.import_module(module_name), attribute))
        mounted.append(name)
    return mounted


def invoked_command(argv: list[str]) -> str | None:
    """The command named on the command line; None when there is none (`swarm`, `swarm --help`)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main() -> None:
    # Only the command that runs is mounted (all of them for the help): `swarm streams` imports the stream
    # views, not the service code behind `swarm users` nor anything else it does not use.
    wanted = invoked_command(sys.argv[1:])
    if wanted not in OWN_COMMANDS:
        mount_service_groups(app, wanted)
    mount_groups(app, only=wanted)
    mount_commands(app, only=wanted)
    app()


if __name__ == "__main__":
    main()
