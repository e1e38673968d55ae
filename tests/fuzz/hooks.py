"""Schemathesis hooks for the fuzz run (loaded by `schemathesis.toml` in the schemathesis process).

- Auth: every request gets a token minted for the fuzzing admin, with a session of its own, signed with
  the system's key as auth_svc would sign it: a generated logout or password change then ends that one
  request's session, not the whole run's.
- Values only the API can make: a non-empty `cursor` is replaced by a real one (same shape as the API's;
  a forged one is a 400 by design, and the property tests cover forged ones), and an assignee that is a
  UUID by the fuzzing admin's own id (an assignee must be a member: a random one is a 400 by design).
  Both rewrite values the schema allows into values the API accepts, so `positive_data_acceptance`
  stays strict everywhere else.
- Time: a long-poll's `wait` (up to 30 s, all of it spent when nothing changes) is cut to at most 1 s: the
  held path is still taken, and the run's time goes to other requests.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import schemathesis

from common.core.formats import is_uuid
from common.core.ids import encode_keyset
from tests.helpers import access_token, user_record

KEYS_DIR = Path(os.environ["FUZZ_KEYS_DIR"])
ADMIN = user_record(os.environ["FUZZ_USERNAME"], id=os.environ["FUZZ_USER_ID"], role="admin")
_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


@schemathesis.auth(refresh_interval=None)
class MintedToken:
    def get(self, case: Any, context: Any) -> str:
        return access_token(KEYS_DIR, ADMIN)

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def real_cursor(seed: str) -> str:
    """A cursor as the API makes them, chosen by `seed` (the value the fuzzer drew)."""
    digest = hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest()
    moment = _EPOCH + timedelta(microseconds=int.from_bytes(digest[:6], "big"))
    return encode_keyset(moment, str(uuid.UUID(bytes=digest[:16])))


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    query = case.query
    if isinstance(query, dict) and isinstance(query.get("cursor"), str) and query["cursor"]:
        query["cursor"] = real_cursor(query["cursor"])
    if isinstance(query, dict) and isinstance(query.get("wait"), int) and query["wait"] > 1:
        query["wait"] = 1
    body = case.body
    if isinstance(body, dict) and is_uuid(body.get("assignee_id")):
        body["assignee_id"] = ADMIN["id"]
