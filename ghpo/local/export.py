"""`ghpo export` and the end of `ghpo run`: a run folder's latest checkpoint as a Hugging Face folder.

The run folder says everything the export needs: `trainer.toml` names the model folder the run started
from and where its checkpoints are, `run-config.json` holds the prompt template it trained with (recorded
in the export, so `ghpo eval --model <export>` asks the way the policy was trained). By default the
export goes to `<run_dir>/export/`; `ghpo run` writes it there when it ends (unless `[run] export =
false`), replacing the previous one. A LoRA run (`[model.lora]` in trainer.toml) exports its adapter as
a PEFT folder, or with `merged` (what `ghpo run` writes) the merged model with the adapter in `adapter/`.

What it deliberately does not do: the conversion itself (ghpo.trainer.train.export), or stop a run whose
export failed (the checkpoints stay; `ghpo export --run-dir` can try again).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path

from ghpo.trainer.train.config import LoraSection
from ghpo.trainer.train.export import ExportError, export_adapter, export_checkpoint, latest_checkpoint

EXPORT_DIR = "export"
TRAINER_CONFIG = "trainer.toml"
RUN_CONFIG = "run-config.json"


def export_run(
    run_dir: Path, out: Path | None = None, *, checkpoint: str | None = None, merged: bool = False
) -> Path:
    """Export the run's latest checkpoint (or the one named) to `out` (default <run_dir>/export). A LoRA
    run exports its adapter (PEFT folder), or with `merged` the merged model with the adapter inside."""
    run_dir = Path(run_dir)
    config_path = run_dir / TRAINER_CONFIG
    if not config_path.is_file():
        raise ExportError(
            f"{run_dir} holds no ghpo run (no {TRAINER_CONFIG}): give the folder `ghpo run` used"
        )
    trainer = tomllib.loads(config_path.read_text())
    base_model = Path(trainer["model"]["path"])
    checkpoints = Path(trainer["run"]["checkpoint_dir"])
    folder = checkpoints / checkpoint if checkpoint else latest_checkpoint(checkpoints)
    if folder is None or not folder.is_dir():
        what = f"no checkpoint {checkpoint}" if checkpoint else "no complete checkpoint yet"
        raise ExportError(f"{checkpoints}: {what}; the trainer writes one every run.checkpoint_every steps")
    run_config = run_dir / RUN_CONFIG
    prompt = json.loads(run_config.read_text()).get("prompt") if run_config.is_file() else None
    info = {"run_dir": str(run_dir), **({"prompt": prompt} if prompt else {})}
    out = Path(out) if out else run_dir / EXPORT_DIR
    lora = trainer["model"].get("lora")
    if lora is not None:
        return export_adapter(folder, base_model, LoraSection(**lora), out, merged=merged, info=info)
    return export_checkpoint(folder, base_model, out, info=info)


def export_at_end(run_dir: Path, enabled: bool, log: Callable[[str], None] = print) -> Path | None:
    """The end of `ghpo run`: export, and say where (or why not); an export failure does not fail the run."""
    if not enabled:
        return None
    log("exporting the trained policy ...")
    try:
        path = export_run(run_dir, merged=True)  # a LoRA run's too: `ghpo eval --model` needs a model
    except ExportError as exc:
        log(f"export skipped: {exc}")
        return None
    log(f"trained policy (Hugging Face folder): {path}; score it with `ghpo eval --model {path}`")
    return path
