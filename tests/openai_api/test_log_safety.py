"""Client-controlled text cannot forge or corrupt log lines, in the plain or the JSON format."""

from __future__ import annotations

import json
import logging

import pytest
from django.conf import settings

from inference_site.log_format import JsonFormatter
from openai_api.log_text import log_safe
from openai_api.request_record import RequestRecord

HOSTILE = [
    "x\nFAKE 200 line",
    "x\r\nFAKE",
    "x\x00FAKE",
    "x\x1b[2J\x1b[31mFAKE",
    "x\x85FAKE",
    "x\u2028FAKE",
    "x\u2029FAKE",
    "x\x0bFAKE\x0c",
    "x\u202eFAKE",
    "x\ud800FAKE",
]


def _plain(record: logging.LogRecord) -> str:
    return logging.Formatter(settings.LOGGING["formatters"]["plain"]["format"]).format(record)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_log_safe_keeps_any_value_on_one_printable_line(hostile: str) -> None:
    safe = log_safe(hostile)

    assert safe.isprintable()
    assert len(safe.splitlines()) == 1
    safe.encode("utf-8")


def test_log_safe_leaves_plain_values_alone_and_quotes_what_could_pass_for_fields() -> None:
    assert log_safe("gemma-3-270m") == "gemma-3-270m"
    assert log_safe("/v1/chat/completions") == "/v1/chat/completions"
    assert log_safe("x\nFAKE 200 line") == '"x\\nFAKE 200 line"'
    assert log_safe("m status=200") == '"m status=200"'
    assert log_safe("") == '""'
    assert log_safe(None) == "-"


def test_log_safe_is_unambiguous() -> None:
    assert log_safe("a\\nb") != log_safe("a\nb")
    assert log_safe('a"b') == 'a\\"b'
    assert log_safe("\x00\x1b") == "\\x00\\x1b"


def test_log_safe_cuts_long_values_between_escapes() -> None:
    cut = log_safe("\x00" * 1000, limit=200)

    assert cut == "\\x00" * 50 + "..."
    assert log_safe("a" * 1000).endswith("a...")
    assert len(log_safe("a" * 1000)) == 203


def test_a_hostile_model_and_path_cannot_forge_an_access_line(
    transactional_db: None, caplog: pytest.LogCaptureFixture
) -> None:
    record = RequestRecord(
        request_id="cmpl-hostile", endpoint="/v1/x\nFAKE 404 path", model="x\nFAKE 200 line", status=404
    )

    with caplog.at_level(logging.INFO, logger="openai_api.access"):
        record.finish()

    [access] = [r for r in caplog.records if r.name == "openai_api.access"]
    line = _plain(access)
    assert len(line.splitlines()) == 1
    assert not any(part.lstrip().startswith("FAKE") for part in caplog.text.splitlines())
    assert ' model="x\\nFAKE 200 line" ' in line
    assert 'cmpl-hostile "/v1/x\\nFAKE 404 path" ' in line


@pytest.mark.parametrize("hostile", HOSTILE)
def test_json_log_records_stay_one_line_of_valid_json(hostile: str) -> None:
    record = logging.LogRecord("openai_api.access", logging.INFO, __file__, 1, "model=%s", (hostile,), None)

    line = JsonFormatter().format(record)

    assert len(line.splitlines()) == 1
    assert all(char.isprintable() for char in line)
    line.encode("utf-8")
    assert json.loads(line)["message"] == f"model={hostile}"
