"""Worker of the fresh-process resume test: build a trainer from a config (JSON, argv[1]) over recorded
batches (argv[2]), resume from the config's checkpoint_dir, train to run.steps, and write the final
parameters (safetensors, argv[3]) and the losses of the steps it took (JSON, argv[3] + ".json").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import save_file

from ghpo.shared.schemas.rollout import Batch
from ghpo.trainer.train.checkpoint import Checkpointer
from ghpo.trainer.train.config import parse_config
from ghpo.trainer.train.engine import build_engine
from ghpo.trainer.train.loop import Trainer
from ghpo.trainer.train.weights import full_state_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.e2e.trainer_support import ListSource


def main() -> None:
    config = parse_config(json.loads(sys.argv[1]))
    batches = [Batch.model_validate_json(line) for line in Path(sys.argv[2]).read_text().splitlines()]
    trainer = Trainer(build_engine(config), ListSource(batches), Checkpointer(config.run.checkpoint_dir))
    assert trainer.start(), "nothing to resume from"
    trainer.run()
    save_file(full_state_dict(trainer.train, 1 << 20), sys.argv[3])
    Path(sys.argv[3] + ".json").write_text(json.dumps([r.loss for r in trainer.history]))


if __name__ == "__main__":
    main()
