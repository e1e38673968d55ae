"""Optional profiles with py-spy: where a process spends its time while under load (top self frames)."""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def py_spy_path() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float) -> tuple[subprocess.Popen[bytes], Path] | None:
    exe = py_spy_path()
    if exe is None:
        return None
    out = Path(tempfile.mkstemp(suffix=".txt")[1])
    proc = subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, out


def finish(handle: tuple[subprocess.Popen[bytes], Path] | None, top: int = 8) -> str:
    """The profile's top frames by self time (and the top modules by inclusive time), as Markdown."""
    if handle is None:
        return "_No profile: py-spy is not installed (`.venv/bin/pip install py-spy`)._"
    proc, out = handle
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
    try:
        text = out.read_text()
    finally:
        out.unlink(missing_ok=True)
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for mod in {_module(f) for f in frames}:
            incl[mod] += n
    if not total:
        return "_py-spy recorded no samples (it may need ptrace permission)._"
    lines = [f"py-spy, {total} samples. Top self time:", ""]
    lines += [
        f"- {n / total:.0%} `{frame}`"
        + (" (the event loop itself: selector, callbacks)" if frame.startswith("run_app ") else "")
        for frame, n in own.most_common(top)
    ]
    lines += ["", "Inclusive time by file (below the entry point):", ""]
    lines += [f"- {n / total:.0%} `{mod}`" for mod, n in incl.most_common(top + 3) if n < 0.7 * total][:top]
    return "\n".join(lines)


def _module(frame: str) -> str:
    # "func (path/to/module.py:123)" → the top package directory of interest
    path = frame.rpartition("(")[2].rstrip(")").rpartition(":")[0]
    parts = Path(path).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1] if len(parts) > parts.index("site-packages") + 1 else path
    if "python3.11" in parts:
        return "stdlib:" + (parts[-1] if parts else path)
    return "/".join(parts[-2:]) if len(parts) >= 2 else path
