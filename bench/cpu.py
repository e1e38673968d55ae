"""CPU use of the system's processes over a measurement (from /proc): which process bounds a figure."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _proc_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def _by_name() -> dict[str, int]:
    """Ticks of every postgres and redis-server process on the machine, by command name."""
    out: dict[str, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            comm = (d / "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("postgres") or comm.startswith("redis-server") or comm == "wrk" or comm.startswith("nginx"):
            key = "postgres" if comm.startswith("postgres") else comm
            out[key] = out.get(key, 0) + _proc_ticks(int(d.name))
    return out


class CpuMeter:
    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before = {k: _proc_ticks(p) for k, p in pids.items()}
        self.before_named = _by_name()
        self.bench_before = _proc_ticks(os.getpid())

    def shares(self, seconds: float) -> dict[str, float]:
        """Cores used by each process (1.0 = one core busy) since construction."""
        out = {k: (_proc_ticks(p) - self.before[k]) / TICK / seconds for k, p in self.pids.items()}
        named = _by_name()
        for k, v in named.items():
            out[k] = (v - self.before_named.get(k, 0)) / TICK / seconds
        out["bench process"] = (_proc_ticks(os.getpid()) - self.bench_before) / TICK / seconds
        return out

    @staticmethod
    def describe(shares: dict[str, float]) -> str:
        items = sorted(shares.items(), key=lambda kv: -kv[1])
        return (
            ", ".join(f"{k} {v:.2f}" for k, v in items if v >= 0.01)
            + f" (total {sum(shares.values()):.2f} cores of {os.cpu_count()})"
        )
