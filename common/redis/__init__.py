"""Redis as this code base uses it: one client factory, the names of streams and their companions, entry
ids and their times, pub/sub (a reconnecting subscriber, publishing), the fixed-window rate limiter and
the session deny-list. Knows no mechanism built on top (`common.messaging`)."""
