"""SIGTERM with streams running: a bounded grace, then an error event and [DONE], every row written.

The scripted model sends 50 tokens a second of a 3000-token reply, so both streams are still
running when the grace ends.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.support import SCRIPTED_MODEL as MODEL
from tests.support import scripted_models_toml, sse_events, start_scripted_server, stop_server

SLOW = scripted_models_toml(n_ctx=8192, reply_tokens=3000, tokens_per_second=50)


def test_sigterm_ends_running_streams_cleanly_and_writes_their_rows(tmp_path: Path) -> None:
    server = start_scripted_server(tmp_path, env={"SHUTDOWN_GRACE_SECONDS": "2"}, models_toml=SLOW)
    results: dict[int, tuple[str, list[str]]] = {}
    first_tokens = threading.Barrier(3, timeout=60)

    def stream(i: int) -> None:
        body = {
            "model": MODEL,
            "prompt": f"Story {i}: once upon a time",
            "max_tokens": 3000,
            "stream": True,
        }
        with (
            httpx.Client(base_url=server.api_url, headers=server.auth(), timeout=120) as http,
            http.stream("POST", "/completions", json=body) as response,
        ):
            lines = response.iter_lines()
            first = next(lines)
            first_tokens.wait()
            results[i] = (response.headers["x-request-id"], sse_events(iter([first, *lines])))

    try:
        threads = [threading.Thread(target=stream, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        first_tokens.wait()
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=60)
        server.process.wait(timeout=60)
        took = time.monotonic() - signalled
    finally:
        stop_server(server)

    assert 2 <= took < 2 + 15, f"the process took {took:.1f} s to exit (grace: 2 s)"
    assert sorted(results) == [0, 1]
    for request_id, events in results.values():
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
        assert error["code"] == "model_unavailable"
        with sqlite3.connect(server.database) as db:
            row = db.execute(
                "SELECT status_code, completion_tokens FROM openai_api_requestlog WHERE request_id = ?",
                (request_id,),
            ).fetchone()
        assert row is not None, f"no request-log row for {request_id}"
        assert row[0] == 503 and row[1] > 0
