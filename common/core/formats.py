"""What a valid id, number, name or time looks like: one definition of each, for every service.

A validator here accepts exactly what the stores behind it accept (PostgreSQL's `uuid`, `bigint` and
`timestamptz`, Redis stream ids, MongoDB's dates, Python's datetime range), so bad input is a 400 (or a
404 for a path id) and never reaches a store that would raise. Each rule is written once as a pattern
that means the same to Python's `re` (used with `fullmatch`, so a trailing newline never slips past a
`$`) and to ECMA-262 (the OpenAPI document's regex dialect): the document shows clients the rule the
code applies. `tests/common/core/test_formats_properties.py` checks both claims against real servers.

The stream-id pattern is written out by `_decimal_at_most` rather than checked with `int()`: a pattern
is what the document can carry, and `int()` also takes `_`, spaces and non-ASCII digits.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

# -- ids -----------------------------------------------------------------------------------------------

# The canonical 8-4-4-4-12 form, any case. `uuid.UUID()` also takes `urn:uuid:...`, braces and no
# hyphens, which PostgreSQL refuses (a 500) and MongoDB stores as a different string.
UUID_FORM = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
UUID_PATTERN = f"^{UUID_FORM}$"
_UUID = re.compile(UUID_PATTERN)


def is_uuid(value: object) -> bool:
    """Whether `value` is a UUID in its canonical form (a path id that is not one names nothing: 404)."""
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


def canonical_uuid(value: str) -> str:
    """The lower-case canonical form (the one our rows, events and MongoDB documents hold)."""
    if not is_uuid(value):
        raise ValueError(f"not a canonical UUID: {value!r}")
    return str(uuid.UUID(value))


class Uuid(fields.UUID):
    """A UUID in canonical form, loaded as its lower-case string; `urn:uuid:`, braces, bare hex and
    non-strings are refused. Documented as `format: uuid` with the pattern."""

    default_error_messages = {"invalid_uuid": "Not a valid UUID (expected 8-4-4-4-12 hexadecimal digits)."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {}).setdefault("pattern", UUID_PATTERN)
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:  # type: ignore[override]
        if not is_uuid(value):
            raise self.make_error("invalid_uuid")
        return str(uuid.UUID(value))


# -- numbers -------------------------------------------------------------------------------------------

MAX_BIGINT = 2**63 - 1  # PostgreSQL's bigint (OFFSET, LIMIT): one more is a DataError
MAX_UINT64 = 2**64 - 1  # each part of a Redis stream id


def _decimal_at_most(limit: int) -> str:
    """A pattern for the decimal numbers 0..limit (ASCII digits; leading zeros allowed up to limit's width)."""
    digits = str(limit)
    width = len(digits)
    choices = [f"[0-9]{{1,{width - 1}}}"]  # fewer digits: always below the limit
    for i, digit in enumerate(digits):  # same width: equal up to position i, then smaller there
        if digit != "0":
            rest = width - 1 - i
            choices.append(digits[:i] + f"[0-{int(digit) - 1}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    choices.append(digits)
    return "(?:" + "|".join(choices) + ")"


_UINT64 = _decimal_at_most(MAX_UINT64)
# What the admin API takes as a position in a stream: `<ms>-<seq>` or `<ms>` (XRANGE reads the missing
# sequence as 0 at a start, the maximum at an end). Redis refuses a part of 2^64 or more (a 503 before).
ENTRY_ID_FORM = f"{_UINT64}(?:-{_UINT64})?"
ENTRY_ID_PATTERN = f"^{ENTRY_ID_FORM}$"
# An id of one entry (a dead letter): both parts.
FULL_ENTRY_ID_PATTERN = f"^{_UINT64}-{_UINT64}$"
_ENTRY_ID = re.compile(ENTRY_ID_PATTERN)
_FULL_ENTRY_ID = re.compile(FULL_ENTRY_ID_PATTERN)


def is_entry_id(value: str, *, full: bool = False) -> bool:
    """`<ms>-<seq>` or `<ms>` (`full`: only `<ms>-<seq>`), each part a decimal below 2^64."""
    return (_FULL_ENTRY_ID if full else _ENTRY_ID).fullmatch(value) is not None


# -- text ----------------------------------------------------------------------------------------------


class FullMatch(validate.Validator):
    """A pattern the whole value must match. marshmallow's `validate.Regexp` uses `re.match`, where
    `^...$` still takes `"alice\\n"` (`$` matches before a final newline). The pattern is kept as written,
    `^...$`: apispec shows it (`.regex`) in the document, and ECMA-262 has no `\\Z`."""

    def __init__(self, pattern: str, *, error: str) -> None:
        self.regex = re.compile(pattern)
        self.message = error

    def __call__(self, value: str) -> str:
        if not isinstance(value, str) or self.regex.fullmatch(value) is None:
            raise ValidationError(self.message)
        return value


USERNAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"

# PostgreSQL cannot store NUL in text (`common.http.validation.load` refuses it in every field); every other
# string the document describes says so with this pattern.
NO_NUL_PATTERN = r"^[^\u0000]*$"
# Blank: only white space, as Python's `str.isspace` and ECMA-262's `\s` see it (their union: they
# differ on U+001C..U+001F, U+0085 and U+FEFF), so the document's pattern and this check never disagree.
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
NOT_BLANK_PATTERN = rf"^[^\u0000]*[^\u0000{_SPACE}][^\u0000]*$"


def not_blank() -> FullMatch:
    """Some character that is not white space (the value is stored as given, not stripped)."""
    return FullMatch(NOT_BLANK_PATTERN, error="must not be blank")


# -- times ---------------------------------------------------------------------------------------------


def utc_instant(value: datetime) -> datetime:
    """An aware datetime as UTC, or ValueError when it has no offset or its UTC form leaves years 1 to 9999
    (`0001-01-01T00:00:00+14:00` is in year 0 in UTC: asyncpg, MongoDB and datetime arithmetic all fail
    on it). Every such instant fits PostgreSQL's timestamptz and a BSON date."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a time needs an offset")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("time out of range") from exc


# RFC 3339 wants a time of day: marshmallow alone would take a bare date as midnight.
_HAS_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


class UtcDateTime(fields.DateTime):
    """An RFC 3339 date-time, normalised to UTC; a time without an offset is taken as UTC."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or not _HAS_TIME.match(value):
            raise ValidationError("Not a valid RFC 3339 date-time.")
        parsed: datetime = super()._deserialize(value, attr, data, **kwargs)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        try:
            return utc_instant(parsed)
        except ValueError as exc:
            raise ValidationError("Date-time out of range.") from exc


# -- query strings -------------------------------------------------------------------------------------


class OptionalQueryStr(fields.Str):
    """An optional query parameter where an empty value (`?cursor=`) means "not given": what a form or a
    client that fills in `?cursor=${next ?? ""}` sends, and what the document's `type: string` allows."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("load_default", None)
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:  # type: ignore[override]
        text = super()._deserialize(value, attr, data, **kwargs)
        return text or None

    def _validate(self, value: Any) -> None:
        if value is not None:  # an empty value is no value: nothing to check
            super()._validate(value)


def string_rules(converter: Any, field: fields.Field[Any], ret: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
    """apispec attribute function: a plain string field gets the no-NUL pattern (see NO_NUL_PATTERN)."""
    plain = isinstance(field, fields.String) and not isinstance(field, (fields.UUID, fields.Email))
    if plain and not {"pattern", "format", "enum"} & set(ret):
        return {"pattern": NO_NUL_PATTERN}
    return {}


# -- bodies --------------------------------------------------------------------------------------------


class PartialUpdate(Schema):
    """A PATCH body: only the fields present change, and at least one must be present (`{}` is a 400
    "nothing to update", shown as `minProperties: 1` in the document)."""

    json_schema: ClassVar[dict[str, Any]] = {"minProperties": 1}

    @validates_schema
    def _something(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data:
            raise ValidationError("nothing to update")
