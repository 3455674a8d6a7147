"""Libraries' progress bars follow ghpo's own progress rule: shown on a terminal, off in a log file.

transformers ("Writing model shards"), huggingface_hub, datasets ("Map", "Generating split") and vLLM
("Loading safetensors checkpoint shards") draw tqdm bars on stderr whatever it is; in a log file
(`make run > run.log 2>&1`, a service's log under `ghpo run`, a container's output) each redraw is a
carriage return, and the file fills with them. `follow_terminal()`, called once when a `ghpo` command
starts, switches them off unless stderr is a terminal: through the environment (read by libraries not
imported yet and inherited by child processes, vLLM's engine core and workers among them: the switches
are HF_HUB_DISABLE_PROGRESS_BARS, HF_DATASETS_DISABLE_PROGRESS_BARS and tqdm's own TQDM_DISABLE) and
through the libraries' own switches for those already imported. vLLM's weight-loading bar ignores all of
these (it passes tqdm `disable` itself): the inference engine asks `bars_shown()` for its
`use_tqdm_on_load`.

What it deliberately does not do: touch ghpo's own progress (ghpo.local.progress decides that from
stdout), or turn bars on where a user switched them off.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

OFF = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}


def bars_shown(stream: TextIO | None = None) -> bool:
    """Whether progress bars belong on `stream` (default stderr, where tqdm draws): a terminal, and not
    switched off (by `follow_terminal` in this process or a parent)."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TQDM_DISABLE") != "1"


def follow_terminal(stream: TextIO | None = None) -> bool:
    """Switch libraries' progress bars off unless `stream` (default stderr) is a terminal; returns whether
    they stay on."""
    if bars_shown(stream):
        return True
    os.environ.update(OFF)
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        from datasets.utils import disable_progress_bars as disable_datasets_bars

        disable_datasets_bars()
    return False
