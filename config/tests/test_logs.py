"""Logs: one JSON object per line with LOG_FORMAT=json, readable lines by default, the log context
on every line where it applies and nowhere else, and no credential in any line."""

from __future__ import annotations

import io
import json
import logging
import uuid
from decimal import Decimal

import pytest

from config.logs import formatter, logging_config
from core.log_context import bind_log_context, log_scope
from core.masking import private_values
from domain_events.events import OrderLine, OrderPlaced

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # made up for the test, as the others
API_TOKEN = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
PASSWORD = "correct-horse-battery"


def lines_of(log_format: str, log: callable) -> list[str]:
    """What `log(logger)` writes through the project's formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(log_format))
    logger = logging.getLogger(f"shelfwise.test.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    log(logger)
    return stream.getvalue().splitlines()


def test_json_logs_are_one_object_per_line_with_the_context_bound_where_it_applies():
    def log(logger: logging.Logger) -> None:
        logger.info("before")
        with log_scope(correlation_id="req-1", event_id=uuid.UUID(int=7), tenant_id="t-1", handler="h.one"):
            logger.warning("inside\non two lines")
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                logger.exception("failed")
        logger.info("after")

    lines = lines_of("json", log)
    records = [json.loads(line) for line in lines]
    assert len(records) == 4, "a multi-line message or a traceback is still one line"
    before, inside, failed, after = records
    assert before["message"] == "before"
    assert "correlation_id" not in before
    assert inside["message"] == "inside\non two lines"
    assert inside["correlation_id"] == "req-1"
    assert inside["event_id"] == str(uuid.UUID(int=7))
    assert (inside["tenant_id"], inside["handler"], inside["level"]) == ("t-1", "h.one", "warning")
    assert {"timestamp", "logger", "process"} <= set(inside)
    assert "RuntimeError: boom" in failed["exception"]
    assert failed["correlation_id"] == "req-1"
    assert "correlation_id" not in after, "the scope ended with its block"


def test_what_is_bound_inside_a_scope_does_not_outlive_it():
    def log(logger: logging.Logger) -> None:
        with log_scope(correlation_id="req-1"):
            bind_log_context(tenant_id="found-on-the-way")
            logger.info("this request")
        logger.info("next request")

    this, following = [json.loads(line) for line in lines_of("json", log)]
    assert (this["correlation_id"], this["tenant_id"]) == ("req-1", "found-on-the-way")
    assert "tenant_id" not in following
    assert "correlation_id" not in following


def test_console_logs_are_readable_lines_with_the_context():
    def log(logger: logging.Logger) -> None:
        with log_scope(correlation_id="req-1", handler="h.one"):
            logger.info("handled %s", "order.placed")

    [line] = lines_of("console", log)
    assert not line.startswith("{")
    assert "handled order.placed" in line
    assert "correlation_id=req-1" in line
    assert "handler=h.one" in line


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_no_credential_reaches_a_log_line(log_format):
    event = OrderPlaced(
        tenant_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        lines=(OrderLine(sku="1", title="Dune", quantity=1, unit_price=Decimal("9.99")),),
        total_amount=Decimal("9.99"),
        currency="USD",
        payment_token="tok_visa",
    )

    def log(logger: logging.Logger) -> None:
        logger.warning("handler failed on %r", event)  # a dataclass repr carries the payment token
        logger.info("login %s", {"username": "alice", "password": PASSWORD})
        logger.info('body {"username": "alice", "password": "%s"}', PASSWORD)
        logger.info("form username=alice&password=%s&next=/", PASSWORD)
        logger.info("headers Authorization: Token %s", API_TOKEN)
        logger.info("new endpoint secret %s", WEBHOOK_SECRET)
        logger.info("rotated: secret=%s", WEBHOOK_SECRET)
        logger.info("broker amqp://shelfwise:%s@rabbit:5672//", PASSWORD)
        with log_scope(payment_token="tok_chargeDeclined", api_token=API_TOKEN):
            logger.info("bound")
        try:
            raise ValueError(f"gateway said no to payment_token=tok_visa with key {WEBHOOK_SECRET}")
        except ValueError:
            logger.exception("capture failed")

    output = "\n".join(lines_of(log_format, log))
    for secret in ("tok_visa", "tok_chargeDeclined", PASSWORD, API_TOKEN, WEBHOOK_SECRET, WEBHOOK_SECRET[6:]):
        assert secret not in output
    assert output.count("[redacted]") >= 11
    assert "alice" in output, "what is not a credential stays"
    assert "handler failed on OrderPlaced(" in output


def test_an_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="LOG_FORMAT must be one of console, json"):
        logging_config("xml")


def test_the_private_values_of_the_event_being_handled_are_masked_in_every_line_of_both_formats():
    def log(logger: logging.Logger) -> None:
        with private_values(["pm_card_SECRET123"]):
            logger.warning("card %s refused", "pm_card_SECRET123")
            try:
                raise RuntimeError("the provider said no to pm_card_SECRET123")
            except RuntimeError:
                logger.exception("failed")
        logger.info("after pm_card_SECRET123")

    for log_format in ("json", "console"):
        lines = lines_of(log_format, log)
        if log_format == "json":
            lines = [json.dumps(json.loads(line), ensure_ascii=False) for line in lines]
        text = "\n".join(lines)
        assert "card ••••T123 refused" in text
        assert "the provider said no to ••••T123" in text, "in the traceback too"
        assert text.count("pm_card_SECRET123") == 1, "masked inside the handler's scope only"
