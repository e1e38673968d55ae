"""The benchmark harness's own logic (no timing is asserted anywhere: the figures are bench/REPORT.md's)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.load import parse_wrk
from bench.report import Row, Section, write

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:18777/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.38ms  516.67us   5.89ms   77.54%
    Req/Sec     1.43k    77.47     1.64k    80.00%
  Latency Distribution
     50%  812.00us
     75%    1.60ms
     90%    1.87ms
     99%    1.02s
  1428 requests in 1.00s, 2.22MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   1426.50
Transfer/sec:      2.22MB
"""


def test_wrk_output_becomes_throughput_percentiles_in_ms_and_errors():
    result = parse_wrk(WRK_OUTPUT)
    assert (result.rps, result.p50_ms, result.p99_ms, result.requests, result.errors) == (
        1426.5,
        0.812,
        1020.0,
        1428,
        7,
    )


def _section(key: str, value: str) -> Section:
    return Section(key, f"title {key}", rows=[Row("figure", value, "ref", 0.5, "≥ 75%", False)])


def test_a_partial_run_replaces_its_sections_and_keeps_the_others_in_order(tmp_path: Path):
    report, results = tmp_path / "REPORT.md", tmp_path / "results.json"
    order = ["a", "b", "c"]
    env = {"cores": "2"}
    write(
        [_section(k, f"{k} first") for k in order],
        env,
        "",
        10,
        order=order,
        partial=False,
        report=report,
        results=results,
    )
    write([_section("b", "b again")], env, "--only b", 3, order=order, partial=True, report=report, results=results)

    kept = json.loads(results.read_text())
    assert [(s["key"], s["rows"][0]["value"]) for s in kept["sections"]] == [
        ("a", "a first"),
        ("b", "b again"),
        ("c", "c first"),
    ]
    assert len(kept["runs"]) == 2 and "--only b" in kept["runs"][1]
    text = report.read_text()
    assert text.index("## title a") < text.index("## title b") < text.index("## title c")
    assert "b again" in text and "b first" not in text and "**missed**" in text

    write([_section("a", "a full")], env, "", 5, order=order, partial=False, report=report, results=results)
    assert [s["key"] for s in json.loads(results.read_text())["sections"]] == ["a"]  # a full run starts over
