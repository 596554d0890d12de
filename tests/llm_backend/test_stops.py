from __future__ import annotations

from llm_backend.stops import StopMatcher


def _feed(matcher: StopMatcher, pieces: list[str]) -> tuple[str, bool]:
    out = ""
    for piece in pieces:
        text, stopped = matcher.push(piece)
        out += text
        if stopped:
            return out, True
    return out + matcher.flush(), False


def test_without_stops_text_passes_through() -> None:
    assert _feed(StopMatcher(()), ["a", "b"]) == ("ab", False)


def test_stop_split_across_pieces_is_cut_and_never_emitted() -> None:
    matcher = StopMatcher(("END",))

    first, stopped = matcher.push("hello E")
    assert (first, stopped) == ("hello ", False)
    second, stopped = matcher.push("ND and more")
    assert (second, stopped) == ("", True)


def test_false_start_is_released_once_disproved() -> None:
    assert _feed(StopMatcher(("END",)), ["x E", "NOUGH"]) == ("x ENOUGH", False)


def test_earliest_of_several_stops_wins() -> None:
    assert _feed(StopMatcher(("b", "cd")), ["a cd b"]) == ("a ", True)


def test_held_text_is_flushed_at_the_end() -> None:
    assert _feed(StopMatcher(("STOP",)), ["go ST"]) == ("go ST", False)
