from __future__ import annotations

import asyncio

import asyncpg
import pytest

from common.db.migrations import MigrationError, migrate


def write(directory, name: str, sql: str) -> None:  # type: ignore[no-untyped-def]
    (directory / name).write_text(sql)


async def test_migrations_apply_in_numeric_order_once(database_url, tmp_path):
    write(tmp_path, "002_add_column.sql", "ALTER TABLE t ADD COLUMN b int;")
    write(tmp_path, "001_create.sql", "CREATE TABLE t (a int);")
    write(tmp_path, "010_index.sql", "CREATE INDEX t_b ON t (b);")
    assert await migrate(database_url, [("svc", tmp_path)]) == ["svc/001_create", "svc/002_add_column", "svc/010_index"]
    assert await migrate(database_url, [("svc", tmp_path)]) == []


async def test_two_replicas_starting_at_once_apply_each_migration_exactly_once(database_url, tmp_path):
    # Not idempotent on purpose: a second run of it would fail.
    write(tmp_path, "001_create.sql", "CREATE TABLE once (a int); SELECT pg_sleep(0.2);")
    results = await asyncio.gather(*(migrate(database_url, [("svc", tmp_path)]) for _ in range(3)))
    assert sorted(len(r) for r in results) == [0, 0, 1]


async def test_a_changed_migration_stops_start_up(database_url, tmp_path):
    write(tmp_path, "001_create.sql", "CREATE TABLE t (a int);")
    await migrate(database_url, [("svc", tmp_path)])
    write(tmp_path, "001_create.sql", "CREATE TABLE t (a bigint);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(database_url, [("svc", tmp_path)])


async def test_a_failing_migration_leaves_nothing_half_applied(database_url, tmp_path):
    write(tmp_path, "001_broken.sql", "CREATE TABLE half (a int); SELECT no_such_function();")
    with pytest.raises(asyncpg.PostgresError):
        await migrate(database_url, [("svc", tmp_path)])
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('half')") is None
    finally:
        await conn.close()


async def test_badly_named_files_are_refused(database_url, tmp_path):
    write(tmp_path, "create.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="NNN_name"):
        await migrate(database_url, [("svc", tmp_path)])
