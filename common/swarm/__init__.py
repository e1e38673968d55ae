"""The `swarm` operator tool and everything only it uses: the CLI, the supervisor of `swarm up` (child
processes, embedded servers, state.json), `swarm check`, `republish`, `demo` and the stream commands."""
