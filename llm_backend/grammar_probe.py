"""Grammars are compiled first where a crash costs one request, not the server.

The bounds of :mod:`llm_backend.grammars` keep every known way of crashing llama.cpp's grammar
parser out, but the parser is recursive C++ that aborts or overflows its stack on input it
did not expect, and prints a grammar it cannot parse whole to standard error. So each new
grammar is compiled once in a child process (:mod:`llm_backend.grammar_worker`, which loads
only the vocabulary) before the engine compiles it in the server: a grammar that crashes the
child, or takes longer than :data:`PROBE_TIMEOUT` seconds, is refused with a 400 and the child
is started again; one that does not compile is refused too, and llama.cpp's message about it
goes nowhere. Answers are remembered (:data:`REMEMBERED` grammars), so the schemas that
clients send all day cost one probe each.
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import struct
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 10.0
START_TIMEOUT = 60.0
REMEMBERED = 1024


class ProbeFailed(Exception):
    """The child crashed or timed out on a grammar (the message says which)."""


class GrammarProbe:
    """Compiles grammars in a child process for one model file; thread-safe."""

    def __init__(self, model_path: Path) -> None:
        self._model_path = model_path
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._known: OrderedDict[str, bool] = OrderedDict()

    def start(self) -> None:
        """Start the child now (it loads in the background), so the first grammar waits less."""
        with self._lock:
            if self._child is None:
                self._child = self._spawn()

    def compiles(self, grammar: str) -> bool:
        """Whether llama.cpp compiles ``grammar`` for this model's vocabulary.

        Raises :class:`ProbeFailed` if compiling it crashed the child or took too long.
        """
        key = hashlib.sha256(grammar.encode()).hexdigest()
        with self._lock:
            if key in self._known:
                self._known.move_to_end(key)
                return self._known[key]
            verdict = self._ask(grammar.encode())
            self._known[key] = verdict
            if len(self._known) > REMEMBERED:
                self._known.popitem(last=False)
            return verdict

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "llm_backend.grammar_worker", str(self._model_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parent.parent,
        )

    def _ask(self, grammar: bytes) -> bool:
        child = self._ready_child()
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.write(struct.pack(">I", len(grammar)) + grammar)
            child.stdin.flush()
            answer = self._read(child, PROBE_TIMEOUT)
        except (OSError, ProbeFailed) as exc:
            self._stop()
            logger.warning(
                "the grammar probe failed on a grammar of %d bytes (%s); restarting it", len(grammar), exc
            )
            raise ProbeFailed(str(exc)) from None
        return answer == b"1"

    def _ready_child(self) -> subprocess.Popen[bytes]:
        if self._child is not None and self._child.poll() is not None:
            self._child = None
        if self._child is None:
            self._child = self._spawn()
        child = self._child
        if not getattr(child, "ready", False):
            try:
                if self._read(child, START_TIMEOUT) != b"R":
                    raise ProbeFailed("the grammar probe did not start")
            except ProbeFailed:
                self._stop()
                raise
            child.ready = True  # type: ignore[attr-defined]
        return child

    @staticmethod
    def _read(child: subprocess.Popen[bytes], timeout: float) -> bytes:
        assert child.stdout is not None
        deadline = time.monotonic() + timeout
        fd = child.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProbeFailed(f"no answer within {timeout:.0f} s")
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                byte = os.read(fd, 1)
                if not byte:
                    raise ProbeFailed(f"the probe process died (exit status {child.wait()})")
                return byte

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
