"""A generation's stream gives its slot back however its reader lets go of it."""

from __future__ import annotations

import asyncio
import gc

from llm_backend.engine import PreparedPrompt
from llm_backend.generation_stream import GenerationStream, Job
from llm_backend.types import GenerationRequest, SamplingParams


def _job(loop: asyncio.AbstractEventLoop) -> Job:
    request = GenerationRequest(model="m", prompt="x", sampling=SamplingParams(), request_id="r")
    return Job(request=request, prepared=PreparedPrompt(tokens=(1,)), loop=loop)


def test_a_dropped_stream_object_cancels_its_job() -> None:
    loop = asyncio.new_event_loop()
    job = _job(loop)
    stream = GenerationStream(job)

    del stream
    gc.collect()

    assert job.cancelled.is_set()
    loop.close()


def test_cancel_marks_the_job_cancelled_for_the_scheduler() -> None:
    loop = asyncio.new_event_loop()
    job = _job(loop)
    stream = GenerationStream(job)

    assert not job.cancelled.is_set()
    stream.cancel()
    assert job.cancelled.is_set()
    loop.close()
