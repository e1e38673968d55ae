"""The load generator: `wrk` (Debian package) with `--latency`, parsed into requests/s and p50/p99."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx/3xx + socket errors

    def line(self) -> str:
        return f"{self.rps:,.0f} req/s, p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms"


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    method: str = "GET",
    body: str | None = None,
    headers: dict[str, str] | None = None,
    script: str | None = None,
) -> LoadResult:
    """Run wrk against `url`; a Lua script sets the method, headers and body."""
    exe = wrk_path()
    if exe is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    lua = [f'wrk.method = "{method}"']
    for k, v in (headers or {}).items():
        lua.append(f'wrk.headers["{k}"] = "{v}"')
    if body is not None:
        lua.append(f"wrk.body = [[{body}]]")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script if script is not None else "\n".join(lua) + "\n")
        script = f.name
    try:
        r = subprocess.run(
            [exe, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", script, url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    finally:
        Path(script).unlink(missing_ok=True)
    if r.returncode != 0 or "Requests/sec" not in r.stdout:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stdout}\n{r.stderr}")
    return parse_wrk(r.stdout)


def parse_wrk(out: str) -> LoadResult:
    """What `wrk --latency` printed, as figures."""
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    return LoadResult(rps, p50, p99, requests, errors)
