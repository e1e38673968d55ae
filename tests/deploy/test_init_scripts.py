"""The data stores' init scripts, run for real where we can: the PostgreSQL one against the test
session's server (one database and one role per service, no way into another's database, every
service's migrations applied as its own role), the MongoDB one under Node with a stand-in `db`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from common.contracts import topology
from common.db.migrations import migrate
from common.messaging.tables import COMMON_MIGRATIONS
from common.swarm.embedded import postgres_bindir
from tests.conftest import Servers
from tests.deploy.conftest import MONGO_INIT_SCRIPT, PG_INIT_SCRIPT, REPO_ROOT, password_variable


def psql_binary() -> str | None:
    bundled = postgres_bindir() / "psql"
    return str(bundled) if bundled.exists() else shutil.which("psql")


@dataclass
class Tenant:
    service: str
    database: str
    role: str
    password: str


@dataclass
class InitRun:
    servers: Servers
    tenants: list[Tenant]
    env: dict[str, str]

    def run(self, **overrides: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in {**self.env, **overrides}.items() if v is not None}
        return subprocess.run(["sh", str(PG_INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)

    def url(self, role: str, database: str) -> str:
        admin = urlsplit(self.servers.postgres.url())
        return urlunsplit(admin._replace(netloc=f"{role}@{admin.hostname}:{admin.port}", path=f"/{database}"))

    def admin_url(self) -> str:
        return self.servers.postgres.url()


@pytest.fixture
async def init_run(servers: Servers) -> AsyncIterator[InitRun]:
    """The script's environment for this test's own databases and roles (roles are cluster-wide: unique
    names keep tests and workers apart), dropped afterwards."""
    psql = psql_binary()
    assert psql is not None, "the init script is run with psql, as the postgres image does"
    suffix = uuid.uuid4().hex[:8]
    tenants = [
        Tenant(spec.name, f"{spec.database}_{suffix}", f"{spec.name}_{suffix}", f"pw-{spec.name}-{suffix}")
        for spec in topology.services()
    ]
    env = {
        "PATH": f"{Path(psql).parent}{os.pathsep}{os.environ['PATH']}",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(servers.postgres.port),
        "POSTGRES_USER": servers.postgres.user,
        "TASKSWARM_DATABASES": ",".join(f"{t.database}:{t.role}" for t in tenants),
        **{password_variable(t.role): t.password for t in tenants},
    }
    yield InitRun(servers, tenants, env)
    admin = await asyncpg.connect(servers.postgres.url())
    try:
        for tenant in tenants:
            await admin.execute(f'DROP DATABASE IF EXISTS "{tenant.database}" WITH (FORCE)')
            await admin.execute(f'DROP ROLE IF EXISTS "{tenant.role}"')
    finally:
        await admin.close()


def migration_sources(service: str) -> list[tuple[str, Path]]:
    """What the service's `database_context` migrates: the common tables, then its own."""
    migrations = REPO_ROOT / topology.spec_for(service).module.partition(".")[0] / "migrations"
    return [("common", COMMON_MIGRATIONS)] + ([(service, migrations)] if migrations.is_dir() else [])


def test_the_init_scripts_are_valid_and_executable() -> None:
    # Executable: the postgres image runs an executable *.sh, and sources any other into its own shell.
    assert os.access(PG_INIT_SCRIPT, os.X_OK)
    subprocess.run(["sh", "-n", str(PG_INIT_SCRIPT)], check=True)
    if shutil.which("node"):
        subprocess.run(["node", "--check", str(MONGO_INIT_SCRIPT)], check=True)


async def test_each_service_gets_a_database_owned_by_its_own_unprivileged_role(init_run: InitRun) -> None:
    result = init_run.run()
    assert result.returncode == 0, result.stderr
    admin = await asyncpg.connect(init_run.admin_url())
    try:
        for tenant in init_run.tenants:
            owner = await admin.fetchval(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", tenant.database
            )
            assert owner == tenant.role
            role = await admin.fetchrow(
                "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolpassword FROM pg_authid"
                " WHERE rolname = $1",
                tenant.role,
            )
            assert role["rolcanlogin"] and not (role["rolsuper"] or role["rolcreatedb"] or role["rolcreaterole"])
            assert role["rolpassword"].startswith("SCRAM-SHA-256$")  # hashed by the server, never stored plain
    finally:
        await admin.close()


async def test_a_role_can_reach_its_own_database_and_no_other(init_run: InitRun) -> None:
    assert init_run.run().returncode == 0
    tenants = init_run.tenants
    for tenant in tenants:
        own = await asyncpg.connect(init_run.url(tenant.role, tenant.database))
        await own.close()
        for other in tenants:
            if other is not tenant:
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
                    await asyncpg.connect(init_run.url(tenant.role, other.database))


async def test_every_service_migrates_its_schema_as_its_own_role(init_run: InitRun) -> None:
    """No migration may need more than owning the database (an extension, a role, another database)."""
    assert init_run.run().returncode == 0
    for tenant in init_run.tenants:
        applied = await migrate(init_run.url(tenant.role, tenant.database), migration_sources(tenant.service))
        assert applied, tenant.service


async def test_running_it_again_keeps_the_data_and_sets_new_passwords(init_run: InitRun) -> None:
    assert init_run.run().returncode == 0
    first = init_run.tenants[0]
    conn = await asyncpg.connect(init_run.url(first.role, first.database))
    await conn.execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)")
    await conn.close()
    admin = await asyncpg.connect(init_run.admin_url())
    try:
        query = "SELECT rolpassword FROM pg_authid WHERE rolname = $1"
        before = await admin.fetchval(query, first.role)
        rerun = init_run.run(**{password_variable(first.role): "rotated"})
        assert rerun.returncode == 0, rerun.stderr
        assert await admin.fetchval(query, first.role) != before
    finally:
        await admin.close()
    conn = await asyncpg.connect(init_run.url(first.role, first.database))
    try:
        assert await conn.fetchval("SELECT count(*) FROM kept") == 1
    finally:
        await conn.close()


async def test_a_password_can_come_from_a_file(init_run: InitRun, tmp_path: Path) -> None:
    first = init_run.tenants[0]
    secret = tmp_path / "password"
    secret.write_text("from-a-file")
    variable = password_variable(first.role)
    result = init_run.run(**{variable: None, f"{variable}_FILE": str(secret)})
    assert result.returncode == 0, result.stderr


def test_a_missing_password_or_a_malformed_entry_stops_it_with_the_variable_named(init_run: InitRun) -> None:
    first = init_run.tenants[0]
    variable = password_variable(first.role)
    missing = init_run.run(**{variable: None})
    assert missing.returncode != 0 and variable in missing.stderr
    for entry in ("taskswarm_auth", "Taskswarm:auth", "db:role;drop", ""):
        result = init_run.run(TASKSWARM_DATABASES=entry)
        assert result.returncode != 0 and "TASKSWARM_DATABASES" in result.stderr, entry


MONGO_HARNESS = """
const vm = require("vm");
const fs = require("fs");
const calls = [];
const existing = process.argv[2] === "existing";
const db = {
  getSiblingDB(name) {
    return {
      getUser(user) { calls.push(["getUser", name, user]); return existing ? { user } : null; },
      createUser(spec) { calls.push(["createUser", name, spec]); },
      updateUser(user, spec) { calls.push(["updateUser", name, user, spec]); },
    };
  },
};
vm.runInNewContext(fs.readFileSync(process.argv[1], "utf8"), { db, process, print: () => {} });
console.log(JSON.stringify(calls));
"""


@pytest.mark.parametrize("state", ["fresh", "existing"])
def test_the_mongo_init_script_gives_notif_svc_read_write_on_its_database_only(state: str) -> None:
    node = shutil.which("node")
    assert node is not None, "mongosh scripts are JavaScript: node runs this one with a stand-in db"
    env = {
        "PATH": os.environ["PATH"],
        "TASKSWARM_MONGO_DATABASE": "taskswarm_notif",
        "TASKSWARM_MONGO_USER": "notif_svc",
        "NOTIF_SVC_MONGO_PASSWORD": "pw",
    }
    out = subprocess.run(
        [node, "-e", MONGO_HARNESS, str(MONGO_INIT_SCRIPT), state], env=env, capture_output=True, text=True, check=True
    )
    calls = json.loads(out.stdout)
    roles = [{"role": "readWrite", "db": "taskswarm_notif"}]
    if state == "fresh":
        expected = ["createUser", "taskswarm_notif", {"user": "notif_svc", "pwd": "pw", "roles": roles}]
    else:
        expected = ["updateUser", "taskswarm_notif", "notif_svc", {"pwd": "pw", "roles": roles}]
    assert calls == [["getUser", "taskswarm_notif", "notif_svc"], expected]

    del env["NOTIF_SVC_MONGO_PASSWORD"]
    failed = subprocess.run([node, "-e", MONGO_HARNESS, str(MONGO_INIT_SCRIPT), state], env=env, capture_output=True)
    assert failed.returncode != 0 and b"NOTIF_SVC_MONGO_PASSWORD" in failed.stderr
