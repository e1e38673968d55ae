"""Property tests of the input validators (common.core.formats and the schemas built on them), against the
real stores: whatever a validator accepts, PostgreSQL (`$1::uuid`, `bigint`, `timestamptz`), Redis
(`XRANGE`) and BSON take without raising; whatever it refuses is refused as a ValidationFailed (a 400)
or a False (a 404 for a path id), never another exception. And each pattern the OpenAPI document shows
accepts exactly what the validator accepts.

Hypothesis draws the inputs, leaning on the edges (year 1 and 9999 with extreme offsets, 2^63 and 2^64,
other spellings of a UUID, trailing newlines); the examples the issue found are pinned with @example.
Examples are bounded so the module runs in seconds; the stores are reached synchronously through one
connection each (hypothesis drives plain functions)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import bson
import pytest
import redis
from hypothesis import example, given, settings
from hypothesis import strategies as st
from marshmallow import Schema

from auth_svc.schemas import RegisterRequest
from common.core.errors import ValidationFailed
from common.core.formats import (
    ENTRY_ID_PATTERN,
    MAX_BIGINT,
    MAX_UINT64,
    NOT_BLANK_PATTERN,
    UUID_PATTERN,
    canonical_uuid,
    is_entry_id,
    is_uuid,
)
from common.core.ids import decode_keyset, encode_cursor
from common.core.paging import OffsetPageQuery
from common.http.validation import load
from gateway.admin import DeadLetterQuery, EntriesQuery
from project_svc.schemas import AddMemberRequest, CardListQuery, CreateCardRequest, CreateProjectRequest

BOUNDED = settings(max_examples=150, deadline=None, database=None)

Fetch = Callable[..., Any]


@pytest.fixture(scope="module")
def postgres(servers: Any) -> Iterator[Fetch]:
    """`fetch(sql, *args)`: one value from the session's PostgreSQL, synchronously."""
    loop = asyncio.new_event_loop()
    connection = loop.run_until_complete(asyncpg.connect(servers.postgres.url()))

    def fetch(sql: str, *args: Any) -> Any:
        return loop.run_until_complete(connection.fetchval(sql, *args))

    yield fetch
    loop.run_until_complete(connection.close())
    loop.close()


@pytest.fixture(scope="module")
def stream(servers: Any) -> Iterator[tuple[redis.Redis, str]]:
    """A real stream with one entry, and a client on the session's Redis."""
    client = redis.Redis.from_url(servers.redis.url, decode_responses=True)
    key = f"events:formats-{uuid.uuid4().hex[:8]}"
    client.xadd(key, {"n": "1"})
    yield client, key
    client.delete(key)
    client.close()


def loads(schema: Schema, data: dict[str, Any]) -> dict[str, Any] | None:
    """What `schema` loads from `data`, or None when it refuses it the one allowed way (a 400)."""
    try:
        return load(schema, data)
    except ValidationFailed:
        return None


# -- ids ------------------------------------------------------------------------------------------------

UUIDS = st.uuids().map(str)
ID_SPELLINGS = st.one_of(
    UUIDS,
    UUIDS.map(str.upper),
    UUIDS.map(lambda u: f"urn:uuid:{u}"),
    UUIDS.map(lambda u: "{" + u + "}"),
    UUIDS.map(lambda u: u.replace("-", "")),
    UUIDS.map(lambda u: u + "\n"),
    UUIDS.map(lambda u: f" {u}"),
    st.text(alphabet="0123456789abcdefABCDEF-{}:urn\n \u0663", max_size=45),
    st.text(max_size=40),
)


@BOUNDED
@given(ID_SPELLINGS)
@example("urn:uuid:0d404de6-835c-4641-90b1-a6254e038c17")
@example("0d404de6-835c-4641-90b1-a6254e038c17\n")
def test_an_id_the_validators_accept_is_one_postgres_reads_as_the_same_uuid(postgres: Fetch, value: str) -> None:
    body = loads(AddMemberRequest(), {"user_id": value})
    assert (body is not None) == is_uuid(value) == (re.fullmatch(UUID_PATTERN, value) is not None)
    if body is not None:
        assert body["user_id"] == canonical_uuid(value) == value.lower()
        assert str(postgres("SELECT $1::text::uuid", value)) == body["user_id"]


@BOUNDED
@given(st.one_of(ID_SPELLINGS, st.just("me"), st.just(""), st.just("ME")))
def test_the_assignee_filter_takes_me_a_canonical_id_or_nothing(postgres: Fetch, value: str) -> None:
    query = loads(CardListQuery(), {"assignee_id": value})
    assert (query is not None) == (value in ("me", "") or is_uuid(value))
    if query is not None and query["assignee_id"] not in (None, "me"):
        postgres("SELECT $1::text::uuid", query["assignee_id"])


# -- offsets and limits -----------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([MAX_BIGINT, MAX_BIGINT + 1, 2**64, -1, 0, 100, 101]),
)
NUMBER_SPELLINGS = st.one_of(
    NUMBERS,
    NUMBERS.map(str),
    st.sampled_from(["", " 5 ", "1e3", "1.0", "\u0665", "1_000", "9223372036854775808", "0x10", "NaN"]),
)


@BOUNDED
@given(limit=NUMBER_SPELLINGS, offset=NUMBER_SPELLINGS)
@example(limit=20, offset="9223372036854775808")
def test_a_page_the_validators_accept_is_one_postgres_can_read(postgres: Fetch, limit: Any, offset: Any) -> None:
    query = loads(OffsetPageQuery(), {"limit": limit, "offset": offset})
    if query is not None:
        assert 1 <= query["limit"] <= 100 and 0 <= query["offset"] <= MAX_BIGINT
        postgres("SELECT count(*) FROM (SELECT 1 LIMIT $1 OFFSET $2) page", query["limit"], query["offset"])


def test_the_largest_offset_is_accepted_and_one_more_is_refused() -> None:
    assert loads(OffsetPageQuery(), {"offset": str(MAX_BIGINT)}) == {"limit": 20, "offset": MAX_BIGINT}
    assert loads(OffsetPageQuery(), {"offset": str(MAX_BIGINT + 1)}) is None


# -- times and cursors ------------------------------------------------------------------------------------

OFFSETS = st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59))
AWARE_TIMES = st.builds(lambda moment, offset: moment.replace(tzinfo=timezone(offset)), st.datetimes(), OFFSETS)
TIME_TEXTS = st.one_of(
    AWARE_TIMES.map(datetime.isoformat),
    st.datetimes().map(datetime.isoformat),  # no offset
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "yesterday", ""]),
    st.text(max_size=30),
)
CURSOR_IDS = st.one_of(ID_SPELLINGS, st.integers(min_value=-(2**63), max_value=2**63 - 1), st.none())


def stores_take(postgres: Fetch, moment: datetime) -> None:
    """PostgreSQL's timestamptz, a BSON date and datetime arithmetic all take `moment` (no raise)."""
    assert postgres("SELECT $1::timestamptz", moment) == moment
    bson.decode(bson.encode({"created_at": moment}))
    assert moment - timedelta(0) == moment


@BOUNDED
@given(created_at=TIME_TEXTS, item_id=CURSOR_IDS)
@example(created_at="0001-01-01T00:00:00+14:00", item_id=str(uuid.uuid4()))
@example(created_at="9999-12-31T23:59:59-14:00", item_id=str(uuid.uuid4()))
def test_a_cursor_the_validators_accept_holds_a_time_every_store_takes(
    postgres: Fetch, created_at: Any, item_id: Any
) -> None:
    cursor = encode_cursor({"created_at": created_at, "id": item_id})
    try:
        moment, keyset_id = decode_keyset(cursor)
    except ValidationFailed as refused:
        assert refused.details == {"cursor": ["invalid cursor"]}
        return
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
    assert keyset_id == canonical_uuid(str(item_id))
    stores_take(postgres, moment)
    assert postgres("SELECT ($1::timestamptz, $2::uuid) < ($1::timestamptz, $2::uuid)", moment, keyset_id) is False


@BOUNDED
@given(st.one_of(TIME_TEXTS, st.dates().map(str), st.integers()))
@example("0001-01-01T00:00:00+14:00")
@example("9999-12-31T23:59:59-14:00")
def test_a_due_date_the_validators_accept_is_a_time_every_store_takes(postgres: Fetch, value: Any) -> None:
    body = loads(CreateCardRequest(), {"title": "t", "due_date": value})
    filters = loads(CardListQuery(), {"due_before": value})
    assert (body is None) == (filters is None)
    if body is not None:
        assert body["due_date"].tzinfo == UTC
        stores_take(postgres, body["due_date"])


@BOUNDED
@given(st.text(max_size=20), st.text(max_size=20))
def test_arbitrary_cursor_text_is_a_cursor_or_a_400(postgres: Fetch, prefix: str, rest: str) -> None:
    try:
        moment, _ = decode_keyset(prefix + rest)
    except ValidationFailed:
        return
    stores_take(postgres, moment)


# -- names and text ---------------------------------------------------------------------------------------

NAME_CHARS = "abcXYZ019_.-"
NAMES = st.one_of(
    st.text(alphabet=NAME_CHARS, min_size=2, max_size=52),
    st.text(alphabet=NAME_CHARS, min_size=3, max_size=10).map(lambda name: name + "\n"),
    st.text(alphabet=NAME_CHARS + "\n\r\t \u0000é\u0661", max_size=12),
    st.text(max_size=12),
)


@BOUNDED
@given(NAMES)
@example("alice\n")
def test_a_username_is_exactly_3_to_50_of_the_allowed_characters(postgres: Fetch, name: str) -> None:
    body = loads(RegisterRequest(), {"username": name, "email": "a@example.com", "password": "correct horse"})
    allowed = re.fullmatch(r"[A-Za-z0-9_.\-]{3,50}", name, flags=re.ASCII) is not None
    assert (body is not None) == allowed
    if body is not None:
        assert postgres("SELECT $1::text", body["username"]) == name


@BOUNDED
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=8))
@example("\u001e")
@example("\ufeff")
@example(" \u0000")
def test_a_title_is_stored_as_given_when_it_has_something_besides_white_space(postgres: Fetch, title: str) -> None:
    body = loads(CreateProjectRequest(), {"title": title})
    not_blank = title.strip() != "" and title.strip("\ufeff") != "" and "\x00" not in title
    looks_blank_to_a_client = re.fullmatch(NOT_BLANK_PATTERN, title) is None
    assert (body is not None) == (not_blank and not looks_blank_to_a_client and title != "")
    assert (body is not None) == (not looks_blank_to_a_client)  # the document's pattern is the rule
    if body is not None:
        assert postgres("SELECT $1::text", title) == title


# -- stream ids -------------------------------------------------------------------------------------------

PARTS = st.one_of(st.integers(min_value=0, max_value=2**65), st.sampled_from([MAX_UINT64, MAX_UINT64 + 1, 0]))
ENTRY_IDS = st.one_of(
    st.builds(lambda ms, seq: f"{ms}-{seq}", PARTS, PARTS),
    PARTS.map(str),
    st.builds(lambda ms, seq: f"{ms}-{seq}\n", PARTS, PARTS),
    st.text(alphabet="0123456789-+ ()*\u0663\n", max_size=44),
)


@BOUNDED
@given(ENTRY_IDS)
@example("18446744073709551616-0")
@example("18446744073709551615-18446744073709551615")
def test_a_stream_id_the_validators_accept_is_one_redis_takes(stream: tuple[redis.Redis, str], value: str) -> None:
    client, key = stream
    query = loads(EntriesQuery(), {"from": value})
    assert (query is not None) == (loads(DeadLetterQuery(), {"from": value}) is not None)
    if value == "":  # no value: from the first entry
        assert query is not None and query["start"] is None
        return
    start = query and query["start"]
    assert (start is not None) == is_entry_id(value) == (re.fullmatch(ENTRY_ID_PATTERN, value) is not None)
    decimal = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", value)
    if decimal and all(len(part) <= 20 for part in decimal.groups() if part):
        # Exact for plain decimals: taken if and only if every part is below 2^64.
        assert is_entry_id(value) == all(int(part) <= MAX_UINT64 for part in decimal.groups() if part)
    if start is not None:
        client.xrange(key, min=value, max="+", count=1)
        client.xrevrange(key, max=value, min="-", count=1)
    if is_entry_id(value, full=True):
        client.xrange(key, min=value, max=value, count=1)  # how a dead letter is looked up
