"""How every loop of the system waits after a failure: exponential backoff with jitter, stated once.

A loop whose dependency is away (Redis, PostgreSQL) waits `first_s`, then twice as long after each
further failure, up to `cap_s`; a success starts it over. Each wait is drawn between half and all of
that delay ("equal jitter"), so the replicas that lost Redis at the same moment do not all come back
at the same moment either. Used by the consumer worker (Redis and the database), the outbox relay and
the pub/sub subscriber (`common.redis.pubsub`, under notif_svc's live hub). Written by hand: the policy
is five lines, and redis-py's own backoff classes are shaped for its command retries, not for a loop
that also logs how long it will wait.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

FIRST_S = 0.1
CAP_S = 5.0


@dataclass(slots=True)
class Backoff:
    first_s: float = FIRST_S
    cap_s: float = CAP_S
    _next_s: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._next_s = self.first_s

    def next_delay(self) -> float:
        """The time to wait now (jittered); the next failure waits about twice as long."""
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self.cap_s)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        """After a success: the next failure waits `first_s` again."""
        self._next_s = self.first_s
