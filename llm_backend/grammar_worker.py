"""The child process that compiles grammars for :mod:`llm_backend.grammar_probe`.

``python -m llm_backend.grammar_worker MODEL.gguf`` loads only the model's vocabulary, then
answers requests on stdin/stdout: each request is a 4-byte big-endian length and that many
bytes of GBNF grammar; each answer is one byte, ``1`` if llama.cpp compiles it for this
vocabulary and ``0`` if not. Its standard error goes nowhere (llama.cpp prints a grammar it
cannot parse whole, with ``fprintf``), and if llama.cpp crashes on a grammar only this process
dies.
"""

from __future__ import annotations

import struct
import sys

from llama_cpp import llama_cpp as llama_c
from llama_cpp._internals import LlamaModel


def main(model_path: str) -> int:
    llama_c.llama_backend_init()
    params = llama_c.llama_model_default_params()
    params.vocab_only = True
    model = LlamaModel(path_model=model_path, params=params, verbose=False)
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    answers.write(b"R")  # ready
    answers.flush()
    while True:
        header = requests.read(4)
        if len(header) < 4:
            return 0
        (size,) = struct.unpack(">I", header)
        grammar = requests.read(size)
        sampler = llama_c.llama_sampler_init_grammar(model.vocab, grammar, b"root")
        if sampler:
            llama_c.llama_sampler_free(sampler)
        answers.write(b"1" if sampler else b"0")
        answers.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
