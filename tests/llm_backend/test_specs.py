from __future__ import annotations

from pathlib import Path

import pytest

from llm_backend.specs import BUILTIN_GEMMA, DEFAULT_MODEL_NAME, SpecError, build_specs

NO_ENV = {
    "models_file": None,
    "model_path": None,
    "model_name": None,
    "chat_format": None,
    "chat_template_file": None,
    "n_ctx": None,
}


def test_default_is_the_builtin_gemma_with_the_gemma_format() -> None:
    [spec] = build_specs(**NO_ENV)

    assert (spec.name, spec.path, spec.chat_format) == (DEFAULT_MODEL_NAME, BUILTIN_GEMMA, "gemma")


def test_one_model_from_variables(tmp_path: Path) -> None:
    template = tmp_path / "t.jinja"
    template.write_text("{{ messages }}")

    [spec] = build_specs(
        **{**NO_ENV, "model_path": "/m/qwen.gguf", "chat_template_file": str(template), "n_ctx": 2048}
    )

    assert (spec.name, spec.path, spec.chat_template, spec.n_ctx) == (
        "qwen",
        "/m/qwen.gguf",
        "{{ messages }}",
        2048,
    )


def test_several_models_from_toml_with_relative_paths(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(
        '[[models]]\nname = "a"\npath = "a.gguf"\nchat_format = "chatml"\n\n'
        '[[models]]\nname = "b"\npath = "/abs/b.gguf"\nn_ctx = 512\n'
    )

    a, b = build_specs(**{**NO_ENV, "models_file": str(config)})

    assert (a.name, a.path, a.chat_format) == ("a", str(tmp_path / "a.gguf"), "chatml")
    assert (b.name, b.path, b.n_ctx) == ("b", "/abs/b.gguf", 512)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[models]]\nname = "a"\n', "'path' is required"),
        ('[[models]]\nname = "a"\npath = "x"\nsize = 3\n', "unknown key(s) size"),
        ('[[models]]\nname = "a"\npath = "x"\nn_ctx = "big"\n', "'n_ctx' must be a positive integer"),
        ('[[models]]\nname = "a"\npath = "x"\n[[models]]\nname = "a"\npath = "y"\n', "used twice"),
        ('[[models]]\nname = "a"\npath = "x"\nchat_format = "gemma"\nchat_template = "t"\n', "not both"),
        ("models = 3\n", "expected one or more [[models]]"),
        ('[[models]]\nname = "a"\npath = "x"\nslots = 0\n', "'slots' must be a positive integer"),
        (
            '[[models]]\nname = "a"\npath = "x"\nqueue_timeout = "soon"\n',
            "'queue_timeout' must be a positive",
        ),
        ("[[models]\n", "LLM_MODELS_FILE"),
    ],
)
def test_invalid_toml_is_refused_with_a_sentence_naming_the_problem(
    tmp_path: Path, toml: str, message: str
) -> None:
    config = tmp_path / "models.toml"
    config.write_text(toml)

    with pytest.raises(SpecError, match=None) as error:
        build_specs(**{**NO_ENV, "models_file": str(config)})

    assert message in str(error.value)
    assert str(config) in str(error.value)


def test_environment_tuning_applies_where_the_file_left_the_default(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(
        '[[models]]\nname = "a"\npath = "a.gguf"\nslots = 2\n\n[[models]]\nname = "b"\npath = "b.gguf"\n'
    )
    tuning = {"slots": 4, "max_queue": 10, "queue_timeout": 2.5, "prefix_block": None}

    a, b = build_specs(**{**NO_ENV, "models_file": str(config)}, tuning=tuning)
    [default] = build_specs(**NO_ENV, tuning=tuning)

    assert (a.slots, a.max_queue, a.queue_timeout, a.prefix_block) == (2, 10, 2.5, 64)
    assert (b.slots, b.max_queue, b.queue_timeout) == (4, 10, 2.5)
    assert (default.slots, default.max_queue, default.queue_timeout) == (4, 10, 2.5)
