"""The mechanisms every Taskswarm process shares, in layers whose imports point one way: down.

    testing                 helpers of the test suite and the benchmarks only
    swarm | serve           the operator tool (`swarm`); running one process (`python -m common.serve`)
    docs                    the OpenAPI and AsyncAPI documents, generated from the code and the manifests
    contracts               what several services agree on: manifests, topology, notices, the user replica
    http                    the aiohttp edge: server, app factory, middlewares, bodies, headers, validation
    service                 what a running service holds: its runtime, token verifier, metrics
    messaging               outbox relay, consumer worker, dead letters, retention, stream views
    redis | db              Redis client, keys, ids, pub/sub, rate limits, deny-list; PostgreSQL pool, migrations
    core                    settings, errors, the event envelope, logging, formats, cursors, paging, retry

The rule, in five lines:
1. A package imports only packages drawn below it; packages on one line (`a | b`) not each other either.
2. `common` imports no service package; services import `common` (and never each other).
3. No business logic here: what services share by agreement is a named contract in `common.contracts`.
4. Below `http`, nothing imports aiohttp: a service's use cases and `swarm streams` load no web framework.
5. `make lint` checks 1, 2 and 4 (import-linter, `[tool.importlinter]` in pyproject.toml); so do the tests.
"""
