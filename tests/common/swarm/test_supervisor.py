"""The supervisor behind `swarm up`, on the session's servers, with stand-in services.

These start real processes through `python -m common.serve --factory ...`; only the apps are stand-ins
(tests/common/swarm/fake_services.py), so ports, environment, readiness, crash handling and shutdown are the
real machinery.
"""

from __future__ import annotations

import io
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from common.contracts.topology import ServiceSpec
from common.swarm.embedded import free_port
from common.swarm.procs import LogPrinter
from common.swarm.state import load_state, pid_alive
from common.swarm.supervisor import StartupError, Swarm, SwarmConfig
from common.testing import service_urls
from tests.common.swarm.conftest import REPO_ROOT, http, wait_until
from tests.conftest import Servers

FAKE = ServiceSpec("fake_svc", "tests.common.swarm.fake_services:create_app", "taskswarm_fake", "PROJECT_URL")
FAKE_GATEWAY = ServiceSpec("fake_gateway", "tests.common.swarm.fake_services:create_app", ready_path="/health")
BROKEN = ServiceSpec("broken_svc", "tests.common.swarm.fake_services:create_failing_app", "taskswarm_broken")

MakeSwarm = Callable[..., tuple[Swarm, io.StringIO]]


@pytest.fixture
def make_swarm(servers: Servers, tmp_path: Any) -> Iterator[MakeSwarm]:
    started: list[Swarm] = []

    def make(**overrides: Any) -> tuple[Swarm, io.StringIO]:
        config: dict[str, Any] = {
            "data_dir": tmp_path / "swarm",
            "gateway_port": free_port(),
            "redis_url": servers.redis.url,
            "postgres_url": servers.postgres.url(),
            "keys_dir": servers.keys_dir,
            "database_suffix": f"_{uuid.uuid4().hex[:8]}",
            "env": {"PYTHONPATH": str(REPO_ROOT), "LOG_LEVEL": "info"},
            "ready_timeout_s": 30.0,
            "stop_timeout_s": 10.0,
            "services": [FAKE],
            "gateway_spec": FAKE_GATEWAY,
        }
        config.update(overrides)
        output = io.StringIO()
        swarm = Swarm(SwarmConfig(**config), LogPrinter(output, color=False))
        started.append(swarm)
        return swarm, output

    yield make
    for swarm in started:
        swarm.stop(force=True)


def test_starts_every_replica_on_its_own_port_and_routes_the_gateway_to_them(make_swarm: MakeSwarm) -> None:
    swarm, output = make_swarm(replicas={"fake_svc": 2})
    swarm.start()

    urls = service_urls(swarm)["fake_svc"]
    assert len(set(urls)) == 2
    infos = [http("GET", f"{url}/info")[1] for url in urls]
    assert {info["consumer_name"] for info in infos} == {
        f"fake_svc-{socket.gethostname()}-1",
        f"fake_svc-{socket.gethostname()}-2",
    }
    assert all(info["database_url"].endswith(f"/taskswarm_fake{swarm.config.database_suffix}") for info in infos)
    assert all(info["private_key_file"] == "" for info in infos)  # only auth_svc signs tokens

    assert swarm.gateway_url is not None
    status, gateway_info = http("GET", f"{swarm.gateway_url}/info")
    assert status == 200
    assert gateway_info["routes"]["PROJECT_URL"] == ",".join(urls)
    assert gateway_info["routes"]["AUTH_URL"] == ""  # absent services are unrouted, not defaulted

    log = output.getvalue()
    for label in ("fake_svc.1", "fake_svc.2", "fake_gateway.1"):
        assert re.search(rf"^{re.escape(label)} +\| {{", log, re.MULTILINE), f"no JSON line from {label}"


def test_gateway_workers_share_the_gateway_port_and_are_recorded(make_swarm: MakeSwarm) -> None:
    swarm, _ = make_swarm(gateway_workers=2)
    swarm.start()
    workers = swarm.gateway_workers
    assert len(workers) == 2 and {w.port for w in workers} == {swarm.config.gateway_port}
    # Every request is a new connection; the kernel spreads them over the processes listening. The port
    # answering is what readiness can see, so the second worker may still be starting: wait for it.
    answered_by: set[int] = set()

    def both_answered() -> bool:
        answered_by.update(http("GET", f"{swarm.gateway_url}/info")[1]["pid"] for _ in range(10))
        return answered_by == {w.pid for w in workers}

    wait_until(both_answered, timeout=15, what="connections reaching both gateway workers")
    state = load_state(swarm.data_dir)
    assert state is not None and {p.pid for p in state.processes()} >= {w.pid for w in workers}

    workers[0].kill()  # one worker gone: the port keeps answering through the other
    workers[0].wait(5)
    assert {http("GET", f"{swarm.gateway_url}/info")[1]["pid"] for _ in range(5)} == {workers[1].pid}


def test_records_what_it_started_and_clears_the_pids_when_it_stops(make_swarm: MakeSwarm) -> None:
    swarm, _ = make_swarm()
    swarm.start()
    running = load_state(swarm.data_dir)
    assert running is not None and running.status == "running" and running.is_running()
    assert running.gateway is not None and running.gateway.url == swarm.gateway_url
    pids = [p.pid for p in running.processes()]
    assert pids and all(pid is not None and pid_alive(pid) for pid in pids)
    assert running.services["fake_svc"].database_url == swarm.database_url_of(FAKE)

    swarm.stop()

    stopped = load_state(swarm.data_dir)
    assert stopped is not None and stopped.status == "stopped" and not stopped.is_running()
    assert all(p.pid is None for p in stopped.processes())
    assert not any(pid_alive(pid) for pid in pids if pid is not None)
    assert [p.port for p in stopped.processes()] == [p.port for p in running.processes()]


def test_a_child_that_dies_during_start_up_stops_everything_and_shows_its_last_lines(
    make_swarm: MakeSwarm,
) -> None:
    swarm, _ = make_swarm(services=[FAKE, BROKEN])

    with pytest.raises(StartupError) as failure:
        swarm.start()

    assert failure.value.label == "broken_svc.1"
    assert any("fake.migration_failed" in line for line in failure.value.tail)
    assert swarm.children and not any(child.running() for child in swarm.children)


def test_a_crashed_replica_is_restarted_on_the_same_port(make_swarm: MakeSwarm) -> None:
    swarm, output = make_swarm(restart_crashed=True, gateway_spec=None)
    swarm.start()
    child = swarm.replicas_of("fake_svc")[0]
    first_pid = child.pid

    child.kill()

    def restarted() -> bool:
        swarm.check_children()
        return child.running() and child.pid != first_pid and child.probe_ready()

    wait_until(restarted, timeout=15, what="the replica to come back")
    assert f"{child.label} exited with code -9" in output.getvalue()
    state = load_state(swarm.data_dir)
    assert state is not None and state.services["fake_svc"].replicas[0].pid == child.pid


def test_refuses_a_gateway_port_that_is_taken(make_swarm: MakeSwarm) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        swarm, _ = make_swarm(gateway_port=sock.getsockname()[1])
        with pytest.raises(StartupError, match="already in use"):
            swarm.start()
    assert not any(child.running() for child in swarm.children)


def test_a_second_swarm_on_a_running_data_dir_is_refused_and_changes_nothing(make_swarm: MakeSwarm) -> None:
    running, _ = make_swarm(gateway_spec=None)
    running.start()
    before = load_state(running.data_dir)

    second, _ = make_swarm(gateway_spec=None)
    with pytest.raises(StartupError, match="already running"):
        second.start()

    assert load_state(running.data_dir) == before
    assert all(child.running() for child in running.children)
