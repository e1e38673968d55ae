"""Schemathesis against the whole system (issue 13): every check on, every phase (examples, coverage,
fuzzing, stateful), every operation of the merged OpenAPI document but the WebSocket upgrade, as the
fuzzing admin (tests/fuzz/hooks.py). It must find no server error and no disagreement between the
document and the answers (status codes, content types, headers, bodies, what is accepted and refused).

`make test` runs a smoke of a few examples per operation; `make fuzz` the same with more
(FUZZ_MAX_EXAMPLES, FUZZ_MAX_SECONDS). On a failure, schemathesis' own report is in the assertion
message: each finding with a `curl` line to reproduce it, and the seed to replay the run."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.swarm.supervisor import Swarm
from tests.e2e.client import Api
from tests.e2e.conftest import running_system

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "3"))
# Set: fuzzing and stateful testing go on until this much time is spent (schemathesis' --max-time).
MAX_SECONDS = int(os.environ["FUZZ_MAX_SECONDS"]) if os.environ.get("FUZZ_MAX_SECONDS") else None
# How long the whole run may take before the test gives up on it (the smoke takes ~20 s on 2 cores).
BUDGET_S = (MAX_SECONDS or 0) + 120 + 6 * MAX_EXAMPLES
# The fuzzer is one client sending as fast as it can: the per-user, per-IP and per-login-name limits would
# turn most of its requests into 429s and leave the routes behind them untested.
UNLIMITED = {
    "RATE_LIMIT_USER_PER_MINUTE": "100000000",
    "RATE_LIMIT_AUTH_PER_MINUTE": "100000000",
    "RATE_LIMIT_REFRESH_PER_MINUTE": "100000000",
    "LOGIN_FAILURES_PER_NAME": "0",
}


@pytest.fixture(scope="module")
def system(servers: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    with running_system(servers, tmp_path_factory.mktemp("fuzz"), env=UNLIMITED) as swarm:
        yield swarm


@pytest.fixture
async def api(system: Swarm) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, str(system.gateway_url))


async def schemathesis(*args: str, env: dict[str, str], timeout_s: float) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        *args,
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        return -1, output.decode(errors="replace") + f"\n(killed after {timeout_s} s)"
    return process.returncode or 0, output.decode(errors="replace")


@pytest.mark.timeout(BUDGET_S + 60)
async def test_schemathesis_finds_no_server_error_and_no_disagreement_with_the_document(
    api: Api, system: Swarm, servers: Any
) -> None:
    admin = await api.admin("fuzzer", system.config.data_dir)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "FUZZ_KEYS_DIR": str(servers.keys_dir),
        "FUZZ_USER_ID": admin.id,
        "FUZZ_USERNAME": admin.username,
        "NO_COLOR": "1",
    }
    code, report = await schemathesis(
        "run",
        f"{system.gateway_url}/api/v1/openapi.json",
        "--checks=all",
        "--phases=examples,coverage,fuzzing,stateful",
        f"--max-examples={MAX_EXAMPLES}",
        *([f"--max-time={MAX_SECONDS}"] if MAX_SECONDS else []),
        "--workers=1",  # hypothesis describes strategies with `ast`, which is not safe across threads
        "--request-timeout=10",
        env=env,
        timeout_s=BUDGET_S,
    )
    assert code == 0, report[-20000:]
    assert "Tested: " in report, report[-5000:]
    print(report[report.find("SUMMARY") :])  # operations, phases, cases generated, seed (`make fuzz` shows it)
