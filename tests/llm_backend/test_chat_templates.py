from __future__ import annotations

from llm_backend.chat_templates import fold_system_into_first_user
from llm_backend.types import ChatMessage


def test_system_and_developer_are_prefixed_to_the_first_user_turn() -> None:
    folded = fold_system_into_first_user(
        [
            ChatMessage("system", "Be kind."),
            ChatMessage("developer", "Be brief."),
            ChatMessage("user", "Hi"),
            ChatMessage("assistant", "Hello"),
            ChatMessage("user", "Bye"),
        ]
    )

    assert folded == [
        ChatMessage("user", "Be kind.\n\nBe brief.\n\nHi"),
        ChatMessage("assistant", "Hello"),
        ChatMessage("user", "Bye"),
    ]


def test_a_lone_system_message_becomes_a_user_turn() -> None:
    assert fold_system_into_first_user([ChatMessage("system", "Rules")]) == [ChatMessage("user", "Rules")]


def test_messages_without_system_are_unchanged() -> None:
    messages = [ChatMessage("user", "Hi")]

    assert fold_system_into_first_user(messages) == messages
