"""`swarm streams ...`, `swarm dlq ...` and `swarm trace`: the stream-inspection views in a terminal.

Every query is `common.messaging.views` (the admin API of the gateway calls the same functions), and `streams
trim|archive` are `common.messaging.retention` (as is the services' automatic trimmer); this package only finds Redis
and renders: rich tables on a terminal (colours only there), `--json` for scripts
(`tail` prints JSON lines, one entry per line, so `tail -f --json | jq` works). Redis is found like
every `swarm` command finds the running system (`common.swarm.state.resolve_settings`): `REDIS_URL` when set,
else the one `swarm up` recorded in `--data-dir` (default `.swarm`, or `SWARM_DATA_DIR`).

Commands by group: `browse` (overview, show, tail, pending, event), `retention` (trim, archive), `dlq`,
`trace`; what they share is `base` (options, finding Redis) and `render`.
"""

# Imported for their commands, which they register on the groups of `base` in this order (`--help` lists them so).
from common.swarm.streams_cli import browse, dlq, retention
from common.swarm.streams_cli.base import dlq_app, streams_app
from common.swarm.streams_cli.trace import trace

__all__ = ["browse", "dlq", "dlq_app", "retention", "streams_app", "trace"]
