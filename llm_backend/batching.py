"""One model's decoding context: many sequences, each in its own KV stream, advanced by one
decode per step.

With :mod:`llm_backend.engine` it is one of the two modules that import ``llama_cpp``. A
:class:`BatchContext` belongs to one scheduler thread and is not thread-safe. Sequence ids are
the slot numbers ``0..slots-1``. The KV cache is not unified: each sequence has its own
``n_ctx`` cells (as llama-server keeps them), so a sequence's cells always sit at the same
places whatever the other slots hold, and attention reads only its own cells. In one shared
pool the cells of sequences decoding side by side interleave, which changes how attention
sums and made a prefix cached while other streams ran differ from a cold run's. Copying a
prefix to another sequence goes through the sequence's serialized state, then cuts it.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from llama_cpp import llama_cpp as llama_c

from .engine import LlamaEngine
from .exceptions import ModelLoadError


@dataclass(frozen=True, slots=True)
class BatchEntry:
    """One token of one sequence in a step; ``output`` asks for its logits.

    A ``pad`` entry only keeps a run of sequence ids unbroken (see
    :func:`~llm_backend.step_planner.plan_step`): it goes at the next free position of its
    sequence, whatever ``position`` says, asks for no logits and is removed after the decode."""

    token: int
    position: int
    seq: int
    output: bool
    pad: bool = False


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: a container's or taskset's cpuset), not
    the machine's count: a decode thread more than there are CPUs makes every step wait for it."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class DecodeFailed(RuntimeError):
    """llama_decode refused a batch (no room in the KV cache, or an internal error)."""


class BatchContext:
    """A llama.cpp context with ``slots`` sequences and room for ``n_batch`` tokens a step."""

    def __init__(self, engine: LlamaEngine, *, slots: int) -> None:
        spec = engine.spec
        self.engine = engine
        self.n_batch = max(spec.n_batch, slots)
        threads = spec.n_threads or usable_cpus()
        params = llama_c.llama_context_default_params()
        params.n_ctx = engine.n_ctx * slots
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = slots
        params.kv_unified = False
        params.swa_full = False
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        self._ctx = llama_c.llama_init_from_model(engine.model, params)
        if not self._ctx:
            raise ModelLoadError(
                f"Model '{spec.name}': cannot create a context of {params.n_ctx} tokens for {slots} slots."
            )
        self._memory = llama_c.llama_get_memory(self._ctx)
        self._batch: Any = llama_c.llama_batch_init(self.n_batch, 0, 1)
        self.n_vocab = engine.n_vocab

    def decode(self, entries: Sequence[BatchEntry]) -> None:
        """Evaluate ``entries`` in one ``llama_decode``; their logits are then readable by index.
        Padding entries leave their sequences as they were."""
        batch = self._batch
        batch.n_tokens = len(entries)
        token, pos, n_seq, seq_id, logits = batch.token, batch.pos, batch.n_seq_id, batch.seq_id, batch.logits
        pads: list[tuple[int, int]] = []
        for i, entry in enumerate(entries):
            position = entry.position
            if entry.pad:
                position = int(llama_c.llama_memory_seq_pos_max(self._memory, entry.seq)) + 1
                pads.append((entry.seq, position))
            token[i] = entry.token
            pos[i] = position
            n_seq[i] = 1
            seq_id[i][0] = entry.seq
            logits[i] = entry.output and not entry.pad
        try:
            status = llama_c.llama_decode(self._ctx, batch)
        finally:
            for seq, position in pads:
                llama_c.llama_memory_seq_rm(self._memory, seq, position, -1)
        if status != 0:
            raise DecodeFailed(f"llama_decode returned {status} for a batch of {len(entries)} tokens")

    def logits(self, index: int) -> npt.NDArray[np.float32]:
        """The logits of batch entry ``index`` of the last decode (a view, valid until the next)."""
        row = llama_c.llama_get_logits_ith(self._ctx, index)
        return np.ctypeslib.as_array(row, shape=(self.n_vocab,))

    def logits_rows(self, first: int, count: int) -> npt.NDArray[np.float32]:
        """The logits of ``count`` consecutive batch entries from ``first``, all of which asked for
        logits (their rows are consecutive): a ``(count, n_vocab)`` view, valid until the next decode."""
        row = llama_c.llama_get_logits_ith(self._ctx, first)
        return np.ctypeslib.as_array(row, shape=(count, self.n_vocab))

    def truncate(self, seq: int, length: int) -> bool:
        """Keep the first ``length`` positions of ``seq`` and drop the rest; False if it cannot."""
        return bool(llama_c.llama_memory_seq_rm(self._memory, seq, length, -1))

    def copy_prefix(self, source: int, target: int, length: int) -> bool:
        """Make ``target`` hold ``source``'s first ``length`` positions (``target`` is emptied
        first); False if it could not (``target`` is then empty).

        The copy goes through the serialized state, at once: llama.cpp's own copy between
        streams is only queued until the next decode, and a state saved or restored before
        then would read or be overwritten by stale cells."""
        state = self.save(source) if length > 0 else b""
        if not state:
            self.clear(target)
            return length <= 0
        return self.restore(target, state) and self.truncate(target, length)

    def prefix_usable(self, seq: int, length: int) -> bool:
        """Whether the KV ``seq`` holds still lets it continue at ``length``.

        A sliding-window layer forgets positions that fell out of its window; those are needed
        again when a sequence continues from an earlier point (as llama-server checks too).
        """
        if length <= 0:
            return True
        oldest = int(llama_c.llama_memory_seq_pos_min(self._memory, seq))
        if oldest < 0:
            return False
        return self.engine.n_swa <= 0 or oldest <= max(0, length - self.engine.n_swa)

    def state_size(self, seq: int) -> int:
        """The bytes :meth:`save` would return for ``seq``."""
        return int(llama_c.llama_state_seq_get_size(self._ctx, seq))

    def save(self, seq: int) -> bytes:
        """The KV state ``seq`` holds (its cells, as llama.cpp serializes them); b'' if none."""
        size = self.state_size(seq)
        if size <= 0:
            return b""
        buffer = (ctypes.c_uint8 * size)()
        written = int(llama_c.llama_state_seq_get_data(self._ctx, buffer, size, seq))
        return ctypes.string_at(buffer, written)

    def restore(self, seq: int, state: bytes) -> bool:
        """Make ``seq`` hold a state from :meth:`save` (of any sequence); False if llama.cpp
        refuses it (``seq`` is then empty)."""
        self.clear(seq)
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if int(llama_c.llama_state_seq_set_data(self._ctx, buffer, len(state), seq)) == 0:
            self.clear(seq)
            return False
        return True

    def clear(self, seq: int) -> None:
        llama_c.llama_memory_seq_rm(self._memory, seq, -1, -1)

    def close(self) -> None:
        if self._batch is not None:
            llama_c.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            llama_c.llama_free(self._ctx)
            self._ctx = None
