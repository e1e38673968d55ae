"""The connection pool every service uses, against a real PostgreSQL."""

from __future__ import annotations

from common.db.pool import create_pool
from tests.helpers import eventually


async def test_releasing_a_pooled_connection_sends_no_reset_query(database_url):
    pool = await create_pool(database_url, 1, 1)
    try:
        queries: list[str] = []
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda record: queries.append(record.query))
            await conn.fetchval("SELECT 1")
        async with pool.acquire() as conn:  # the same connection (pool of one), after its release
            await conn.fetchval("SELECT 2")

        async def both_logged() -> bool:  # loggers are called back on the loop, in order
            return "SELECT 2" in queries

        await eventually(both_logged, what="the queries logged")
        # asyncpg's default would have sent its RESET ALL / UNLISTEN * query in between, on release
        assert queries == ["SELECT 1", "SELECT 2"]
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_still_rolled_back_on_release(database_url):
    pool = await create_pool(database_url, 1, 1)
    try:
        await pool.execute("CREATE TABLE abandoned (n int)")
        async with pool.acquire() as conn:
            await conn.execute("BEGIN; INSERT INTO abandoned VALUES (1)")  # never committed
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM abandoned") == 0
    finally:
        await pool.close()
