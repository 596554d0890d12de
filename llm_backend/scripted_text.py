"""What the scripted model says: its tokenizer, its replies and their logprobs, all from the prompt.

Nothing here runs or waits; :mod:`llm_backend.scripted` paces and serves what these functions
decide. The tokenizer splits text into words and punctuation, each with the whitespace before
it (so the pieces join back into the text); a text or chat prompt starts with one start token
whose text is '' (as a BOS token), and chat messages are read as ``role: content`` lines. A
reply is ``reply_tokens`` words drawn from :data:`WORDS` by a generator seeded from the prompt
text: the same for every request at temperature 0, the same for the same ``seed`` otherwise,
fresh each time at a temperature above 0 without a seed. Whether logprobs are asked never
changes the text.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from .exceptions import InvalidTokens
from .scripted_json import minimal_instance, parse_schema
from .scripted_spec import ScriptedSpec
from .stops import StopMatcher
from .types import (
    BackendRequest,
    ChatMessage,
    Finished,
    FinishReason,
    JsonConstraint,
    PromptLogprobs,
    SamplingParams,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)

VOCAB_SIZE = 32_000
"""Token ids 0..31999 are the scripted model's vocabulary (in prompts and ``logit_bias``)."""
MAX_DELAY = 60.0
"""The longest first-token delay a ``[[delay=S]]`` directive can ask for."""

WORDS: tuple[str, ...] = (
    "the", "quiet", "river", "carries", "light", "across", "an", "open", "valley", "while",
    "small", "boats", "drift", "toward", "a", "distant", "harbor", "where", "lanterns", "glow",
    "over", "stone", "bridges", "and", "green", "gardens", "under", "bright", "morning", "clouds",
    "every", "window", "holds", "paper", "maps", "of", "mountains", "copper", "meadows", "falcon",
    "ember", "glacier", "canyon", "ribbon", "anchor", "beacon", "cobalt", "fable",
)  # fmt: skip

_PIECE = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")
_DIRECTIVE = re.compile(r"\[\[(fail_before_first_token|hang|call|fail_after=(\d+)|delay=(\d+(?:\.\d+)?))\]\]")


def text_pieces(text: str) -> list[str]:
    """The scripted tokenizer: words and punctuation with their leading whitespace."""
    return cast(list[str], _PIECE.findall(text))


def render_chat(messages: Sequence[ChatMessage]) -> str:
    """A conversation as ``role: content`` lines; calls and results are written as text."""
    lines = []
    for message in messages:
        speaker: str = message.role
        if message.role == "tool":
            speaker = f"tool ({message.name or message.tool_call_id or 'result'})"
        calls = " ".join(f"[call {c.id} {c.name}({c.arguments})]" for c in message.tool_calls)
        lines.append(f"{speaker}: {' '.join(part for part in (message.content, calls) if part)}")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ReadPrompt:
    """A prompt as the scripted model reads it: its ``text`` (what echo returns and replies are
    drawn from) and one text per token (``pieces``)."""

    text: str
    pieces: tuple[str, ...]


def read_prompt(prompt: str | tuple[int, ...] | tuple[ChatMessage, ...]) -> ReadPrompt:
    """Tokenize a prompt; token ids outside :data:`VOCAB_SIZE` raise InvalidTokens ('prompt')."""
    if isinstance(prompt, str):
        return ReadPrompt(prompt, ("", *text_pieces(prompt)))
    if prompt and isinstance(prompt[0], ChatMessage):
        text = render_chat(cast(tuple[ChatMessage, ...], prompt))
        return ReadPrompt(text, ("", *text_pieces(text)))
    ids = cast(tuple[int, ...], prompt)
    check_ids(ids, param="prompt")
    pieces = tuple(f"<{t}>" if i == 0 else f" <{t}>" for i, t in enumerate(ids))
    return ReadPrompt("".join(pieces), pieces)


def check_ids(tokens: Sequence[int], *, param: str) -> None:
    bad = [t for t in tokens if not 0 <= t < VOCAB_SIZE]
    if bad:
        raise InvalidTokens(
            f"Token id {bad[0]} is not in this model's vocabulary (0..{VOCAB_SIZE - 1}).", param=param
        )


@dataclass(frozen=True, slots=True)
class Directives:
    """How a request's choices behave: a fault (see :data:`llm_backend.scripted_spec.FAULTS`),
    the tokens sent before ``fail_after`` fails, the first-token delay, and ``call`` (reply to
    ``tool_choice`` auto with a call)."""

    fault: str | None
    fail_after: int
    first_token_delay: float
    call: bool = False


def read_directives(texts: Sequence[str], spec: ScriptedSpec) -> Directives:
    """The spec's behaviour, overridden by the first fault and last delay written in ``texts``."""
    fault, fail_after, delay, call = None, spec.fault_after, spec.first_token_delay, False
    for match in _DIRECTIVE.finditer("\n".join(texts)):
        word, after, seconds = match.groups()
        if word == "call":
            call = True
        elif seconds is not None:
            delay = min(float(seconds), MAX_DELAY)
        elif fault is None:
            fault = "fail_after" if after is not None else word
            fail_after = int(after) if after is not None else fail_after
    return Directives(fault or spec.fault, fail_after, delay, call)


def _seeded(material: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(material.encode()).digest()[:8], "big"))


def choice_random(text: str, sampling: SamplingParams) -> random.Random:
    """The generator of one choice: fixed by the prompt at temperature 0, by the prompt and the
    choice's seed when seeded, fresh otherwise."""
    if sampling.temperature <= 0:
        return _seeded(f"greedy\0{text}")
    if sampling.seed is not None:
        return _seeded(f"seed={sampling.seed}\0{text}")
    return random.Random()


def token_logprob(piece: str, scores: random.Random, k: int) -> TokenLogprob:
    """A made-up but consistent logprob for ``piece``: the likeliest of ``k`` alternatives, whose
    probabilities sum to at most 1. Draws the same from ``scores`` whatever ``k``."""
    logprob = -round(scores.uniform(0.02, 0.9), 4)
    offset = scores.randrange(len(WORDS))
    lead = " " if piece.startswith(" ") else ""
    rest = math.log(-math.expm1(logprob))
    others = [lead + w for w in WORDS[offset:] + WORDS[:offset] if lead + w != piece][: max(k - 1, 0)]
    top = [(piece, piece.encode(), logprob)] if k > 0 else []
    top += [(o, o.encode(), round(rest - (i + 1) * math.log(2), 4)) for i, o in enumerate(others)]
    return TokenLogprob(token=piece, piece=piece.encode(), logprob=logprob, top=tuple(top))


def prompt_logprobs(read: ReadPrompt, k: int) -> PromptLogprobs:
    """Each prompt token scored (the first without a logprob), the same for the same prompt."""
    scores = _seeded(f"prompt\0{read.text}")
    scored = tuple(token_logprob(piece, scores, k) for piece in read.pieces[1:])
    return PromptLogprobs(tokens=(None, *scored) if read.pieces else (), texts=read.pieces)


@dataclass(frozen=True, slots=True)
class ToolCallPlan:
    """The function a choice calls, with its parsed ``parameters`` schema (None: any object)."""

    name: str
    schema: Any


def tool_call_plan(request: BackendRequest, asked: bool) -> ToolCallPlan | None:
    """The call every choice makes: the forced function, the first tool when calls are
    required (or ``auto`` and the prompt says ``[[call]]``), else None."""
    tools = {tool.name: tool for tool in request.tools}
    if request.forced_tool is not None:
        name = request.forced_tool
    elif request.tools and (request.tool_choice == "required" or (request.tool_choice == "auto" and asked)):
        name = request.tools[0].name
    else:
        return None
    parameters = tools[name].parameters if name in tools else None
    return ToolCallPlan(name=name, schema=parse_schema(parameters, "tools"))


@dataclass(frozen=True, slots=True)
class ChoiceScript:
    """Everything one choice sends, decided before it runs: its deltas (each carrying the tokens
    it completes), the Finished that ends it, and how it is paced or fails."""

    deltas: tuple[TextDelta | ToolCallDelta, ...]
    finished: Finished
    directives: Directives
    prompt_logprobs: PromptLogprobs | None = None


def choice_script(
    read: ReadPrompt,
    sampling: SamplingParams,
    *,
    reply_tokens: int,
    budget: int,
    directives: Directives,
    call: ToolCallPlan | None = None,
    schema: Any = None,
    scored_prompt: PromptLogprobs | None = None,
) -> ChoiceScript:
    """One choice's reply to ``read``: a call when ``call`` is given, else text (JSON under
    ``sampling.constraint``, ``schema`` being its parsed schema), at most ``budget`` tokens."""
    rng = choice_random(read.text, sampling)
    words = [rng.choice(WORDS) for _ in range(reply_tokens)]
    call_id = f"call_{rng.getrandbits(96):024x}"
    scores = random.Random(rng.getrandbits(64))
    deltas: Sequence[TextDelta | ToolCallDelta]
    if call is not None:
        deltas, finish, used = _call_deltas(call, call_id, words, budget, scores, sampling.logprobs)
    else:
        pieces = _reply_pieces(words, sampling.constraint, schema)
        deltas, finish, used = _text_deltas(pieces, sampling, budget, scores)
    usage = Usage(prompt_tokens=len(read.pieces), completion_tokens=used)
    return ChoiceScript(tuple(deltas), Finished(finish, usage), directives, scored_prompt)


def _reply_pieces(words: list[str], constraint: JsonConstraint | None, schema: Any) -> list[str]:
    if constraint is None:
        return [w if i == 0 else f" {w}" for i, w in enumerate(words)]
    if constraint.schema is None:
        return text_pieces(json.dumps({"reply": " ".join(words)}))
    return text_pieces(json.dumps(minimal_instance(schema, itertools.cycle(words))))


def _text_deltas(
    pieces: list[str], sampling: SamplingParams, budget: int, scores: random.Random
) -> tuple[list[TextDelta], FinishReason, int]:
    """The pieces as the engine would stream them: cut at stops (text that may begin one held
    back), at most ``budget`` tokens (finish 'length' when the budget, not the reply, ends it)."""
    if budget <= 0:
        return [], "length", 0
    matcher = StopMatcher(sampling.stop)
    k = sampling.logprobs
    deltas: list[TextDelta] = []
    pending: list[TokenLogprob] = []
    produced = unreported = 0
    finish: FinishReason = "stop"
    for piece in pieces:
        produced += 1
        unreported += 1
        if k is not None:
            pending.append(token_logprob(piece, scores, k))
        text, stopped = matcher.push(piece)
        if text:
            deltas.append(TextDelta(text, tokens=unreported, logprobs=tuple(pending)))
            unreported, pending = 0, []
        if stopped:
            return deltas, "stop", produced
        if produced >= budget:
            finish = "length"
            break
    tail = matcher.flush()
    if tail or pending:
        deltas.append(TextDelta(tail, tokens=unreported, logprobs=tuple(pending)))
    return deltas, finish, produced


def _call_deltas(
    call: ToolCallPlan, call_id: str, words: list[str], budget: int, scores: random.Random, k: int | None
) -> tuple[list[ToolCallDelta], FinishReason, int]:
    """The call's id and name (one token), then its arguments a token at a time."""
    arguments = json.dumps(minimal_instance(call.schema, itertools.cycle(words)), separators=(",", ":"))
    pieces = [call.name, *text_pieces(arguments)]
    deltas: list[ToolCallDelta] = []
    for i, piece in enumerate(pieces[:budget]):
        logprobs = () if k is None else (token_logprob(piece, scores, k),)
        if i == 0:
            deltas.append(ToolCallDelta(id=call_id, name=call.name, tokens=1, logprobs=logprobs))
        else:
            deltas.append(ToolCallDelta(arguments=piece, tokens=1, logprobs=logprobs))
    finish: FinishReason = "tool_calls" if len(deltas) == len(pieces) else "length"
    return deltas, finish, len(deltas)
