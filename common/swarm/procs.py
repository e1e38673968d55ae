"""Child processes of `swarm up` and their prefixed, coloured output.

Each child is `python -m common.serve <service>` in its own session, so a Ctrl-C in the terminal
reaches only the supervisor, which then stops the children in order (gateway first). A thread per
child reads its merged stdout/stderr line by line and prints `auth_svc.1 | <line>`; the last lines are
kept so a child that dies during start-up can be explained.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import TextIO

from common.contracts.topology import ServiceSpec

# ANSI colours, one per service (replicas of a service share theirs).
_PALETTE = ("36", "32", "33", "35", "34", "96", "92", "93", "95", "94")
_SUPERVISOR_COLOUR = "1;37"

# Loopback probes must never go through an HTTP proxy configured in the environment.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LogPrinter:
    """Writes whole prefixed lines from several threads to one stream."""

    def __init__(self, stream: TextIO | None = None, color: bool | None = None, width: int = 13) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.color = self.stream.isatty() if color is None else color
        self.width = width
        self._colours: dict[str, str] = {}
        # Re-entrant: the signal handler prints from the main thread, possibly while it holds the lock.
        self._lock = threading.RLock()

    def _colour_of(self, service: str) -> str:
        if service not in self._colours:
            self._colours[service] = _PALETTE[len(self._colours) % len(_PALETTE)]
        return self._colours[service]

    def line(self, label: str, service: str, text: str) -> None:
        prefix = f"{label:<{self.width}} |"
        if self.color:
            colour = _SUPERVISOR_COLOUR if service == "swarm" else self._colour_of(service)
            prefix = f"\x1b[{colour}m{prefix}\x1b[0m"
        with self._lock:
            try:
                self.stream.write(f"{prefix} {text}\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                pass  # our reader went away (`swarm up | head`); keep supervising regardless

    def note(self, text: str) -> None:
        """A line from the supervisor itself."""
        self.line("swarm", "swarm", text)


@dataclass
class ChildProcess:
    """One replica of one service (or the gateway), restartable on the same port with the same env."""

    spec: ServiceSpec
    index: int
    port: int
    env: dict[str, str]
    host: str = "127.0.0.1"
    metrics_port: int | None = None  # None: its metrics are on `port` (METRICS_PORT=0)
    process: subprocess.Popen[bytes] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=30))
    started_at: float = 0.0
    restarts: int = 0
    _pump: threading.Thread | None = None

    @property
    def label(self) -> str:
        return f"{self.spec.name}.{self.index}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Where Prometheus (or a curious operator) reads this process's metrics."""
        return f"http://{self.host}:{self.metrics_port or self.port}/metrics"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def command(self) -> list[str]:
        factory = ["--factory", self.spec.factory] if self.spec.factory else []
        return [sys.executable, "-m", "common.serve", self.spec.name, *factory]

    def start(self, printer: LogPrinter) -> None:
        self.tail.clear()
        self.process = subprocess.Popen(
            self.command(),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        self._pump = threading.Thread(
            target=self._read_output, args=(self.process, printer), name=f"log-{self.label}", daemon=True
        )
        self._pump.start()

    def _read_output(self, process: subprocess.Popen[bytes], printer: LogPrinter) -> None:
        assert process.stdout is not None
        with process.stdout:
            for raw in iter(process.stdout.readline, b""):
                text = raw.decode(errors="replace").rstrip("\r\n")
                self.tail.append(text)
                printer.line(self.label, self.spec.name, text)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_stop(self) -> None:
        if self.running():
            assert self.process is not None
            self.process.terminate()

    def kill(self) -> None:
        if self.running():
            assert self.process is not None
            self.process.kill()

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait for exit (reaping it); the exit code, or None if still running after the timeout."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def join_output(self, timeout_s: float = 2.0) -> None:
        """Wait for the last lines of an exited child to be printed."""
        if self._pump is not None:
            self._pump.join(timeout_s)

    def probe_ready(self, timeout_s: float = 1.0) -> bool:
        try:
            with _NO_PROXY_OPENER.open(self.url + self.spec.ready_path, timeout=timeout_s) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False
