"""PostgreSQL access: the asyncpg pool and the ordered migration runner.

Migrations are `NNN_name.sql` files applied in numeric order, each in its own transaction, recorded in
`schema_migrations` per namespace (`common` for the outbox/inbox tables, then the service's own).
Two replicas starting at once serialize on a PostgreSQL advisory lock, so each file runs exactly once;
an applied file whose text changed afterwards stops start-up instead of silently diverging.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson
import structlog

log = structlog.get_logger("db")

COMMON_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_FILE = re.compile(r"^(\d+)_([\w\-]+)\.sql$")
# Arbitrary but fixed: every Taskswarm process contends for the same lock id in its own database.
_MIGRATION_LOCK_ID = 0x7A5C_5A12


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    namespace: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(namespace: str, directory: Path) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.fullmatch(path.name)
        if not match:
            raise MigrationError(f"migration file {path} is not named NNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations with version {version} in {directory}")
        found[version] = Migration(namespace, version, match.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


async def _init_connection(conn: asyncpg.Connection) -> None:
    # UUIDs as plain strings and JSON via orjson: rows go straight into responses and events.
    await conn.set_type_codec("uuid", encoder=str, decoder=str, schema="pg_catalog", format="text")
    for json_type in ("json", "jsonb"):
        await conn.set_type_codec(
            json_type,
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


def like_pattern(search: str) -> str:
    """A case-insensitive `LIKE` pattern matching `search` anywhere (compare with `lower(column)`).

    `%`, `_` and `\\` in the user's text are escaped, so they match themselves, not anything.
    """
    escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release: no reset query. asyncpg's default (advisory unlock all, CLOSE ALL, UNLISTEN *,
    RESET ALL) costs a round trip on every release, for session state this code never leaves on a
    pooled connection: no SET, no LISTEN (the outbox listens on its own connection), only transaction
    advisory locks. asyncpg still rolls back a transaction left open before calling this."""


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    """A single connection with the same codecs as the pool's (for CLIs and listeners)."""
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


async def ensure_database(admin_dsn: str, name: str) -> None:
    """Create database `name` on the server of `admin_dsn` unless it exists (embedded/dev set-ups)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # a concurrent creator won
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def migrate(dsn: str, sources: list[tuple[str, Path]]) -> list[str]:
    """Apply pending migrations of every (namespace, directory) in order; return what was applied."""
    migrations = [m for namespace, directory in sources for m in discover(namespace, directory)]
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       namespace text NOT NULL,
                       version integer NOT NULL,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now(),
                       PRIMARY KEY (namespace, version))"""
            )
            rows = await conn.fetch("SELECT namespace, version, checksum FROM schema_migrations")
            applied = {(r["namespace"], r["version"]): r["checksum"] for r in rows}
            for migration in migrations:
                key = (migration.namespace, migration.version)
                if key in applied:
                    if applied[key] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.namespace}/{migration.version}_{migration.name} "
                            "changed after it was applied; add a new migration instead"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (namespace, version, name, checksum) VALUES ($1, $2, $3, $4)",
                        migration.namespace,
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                label = f"{migration.namespace}/{migration.version:03d}_{migration.name}"
                applied_now.append(label)
                log.info("db.migration_applied", migration=label)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    finally:
        await conn.close()
    return applied_now
