"""A streaming body dropped before its first byte still cancels its work and closes its record."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest
from django.test import RequestFactory

from llm_backend.engine import PreparedPrompt
from llm_backend.scheduler import GenerationStream, _Job
from llm_backend.types import GenerationRequest, SamplingParams
from openai_api import request_record as record_module
from openai_api import responses as wire
from openai_api.request_record import RequestRecord
from openai_api.services import StartedGeneration, UsageMeter, sse_stream


def _stream(loop: asyncio.AbstractEventLoop) -> tuple[GenerationStream, threading.Event]:
    request = GenerationRequest(model="m", prompt="x", sampling=SamplingParams(), request_id="r")
    job = _Job(request=request, prepared=PreparedPrompt(tokens=(1,)), loop=loop)
    return GenerationStream(job), job.cancelled


def test_a_dropped_stream_object_cancels_its_job() -> None:
    loop = asyncio.new_event_loop()
    stream, cancelled = _stream(loop)

    del stream
    gc.collect()

    assert cancelled.is_set()
    loop.close()


def test_a_body_never_started_cancels_and_closes_its_record(monkeypatch: pytest.MonkeyPatch) -> None:
    rows: list[object] = []
    monkeypatch.setattr(record_module.request_log_writer, "submit", rows.append)

    async def scenario() -> tuple[RequestRecord, threading.Event]:
        stream, cancelled = _stream(asyncio.get_running_loop())
        record = RequestRecord.begin(RequestFactory().post("/v1/completions"), prefix="cmpl")
        started = StartedGeneration(
            streams=[stream],
            first=wire_first(),
            meta=wire.ResponseMeta(id=record.request_id, created=0, model="m"),
        )
        body = sse_stream(started, UsageMeter(record), lambda index, event: [], None)
        del body, started, stream
        gc.collect()
        return record, cancelled

    record, cancelled = asyncio.run(scenario())

    assert cancelled.is_set()
    assert record.finished_at is not None and record.disconnected and record.status == 499
    assert len(rows) == 1


def wire_first() -> object:
    from llm_backend.types import Finished, Usage

    return Finished("stop", Usage(prompt_tokens=1, completion_tokens=0))
