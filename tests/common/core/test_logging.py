from __future__ import annotations

import json
import logging

import structlog

from common.core.logging import configure_logging


def test_log_lines_are_json_with_the_service_and_bound_context(capsys):
    try:
        configure_logging("demo_svc", level="info", fmt="json")
        with structlog.contextvars.bound_contextvars(request_id="r-1"):
            structlog.get_logger("t").info("card.created", card_id="c-1")
            logging.getLogger("aiohttp.server").warning("library line")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
        logging.getLogger().handlers.clear()
    assert lines[0]["event"] == "card.created"
    assert lines[0]["card_id"] == "c-1"
    assert lines[0]["service"] == "demo_svc"
    assert lines[0]["request_id"] == "r-1"
    assert lines[0]["level"] == "info" and "timestamp" in lines[0]
    assert lines[1]["event"] == "library line"
    assert lines[1]["request_id"] == "r-1"
