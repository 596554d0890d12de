"""A streaming body dropped before its first byte still cancels its work and closes its record."""

from __future__ import annotations

import asyncio
import gc

import pytest
from django.test import RequestFactory

from llm_backend.scripted import ScriptedBackend
from llm_backend.scripted_spec import ScriptedSpec
from llm_backend.types import BackendRequest, SamplingParams
from openai_api import request_record as record_module
from openai_api import responses as wire
from openai_api.request_record import RequestRecord
from openai_api.services import StartedGeneration, UsageMeter, sse_stream


def test_a_body_never_started_cancels_its_generation_and_closes_its_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows: list[object] = []
    monkeypatch.setattr(record_module.request_log_writer, "submit", rows.append)
    backend = ScriptedBackend(ScriptedSpec(name="m", tokens_per_second=1))

    async def scenario() -> tuple[RequestRecord, int, int]:
        record = RequestRecord.begin(RequestFactory().post("/v1/completions"), prefix="cmpl")
        request = BackendRequest(
            model="m",
            request_id=record.request_id,
            prompts=("go",),
            sampling=SamplingParams(),
        )
        handle = await backend.generate(request)
        streams = await handle.start()
        first = await anext(streams[0])
        started = StartedGeneration(
            handle=handle, streams=streams, first=first, meta=wire.ResponseMeta(id="x", created=0, model="m")
        )
        busy_before = backend.stats().slots_busy
        body = sse_stream(started, UsageMeter(record), lambda index, event: [], None)
        del body, started, streams, handle
        gc.collect()
        await asyncio.sleep(0.05)
        return record, busy_before, backend.stats().slots_busy

    record, busy_before, busy_after = asyncio.run(scenario())

    assert (busy_before, busy_after) == (1, 0)
    assert record.finished_at is not None and record.disconnected and record.status == 499
    assert len(rows) == 1
