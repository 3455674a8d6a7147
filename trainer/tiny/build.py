"""Build, save and cache the tiny policy model: tokenizer, Qwen2 weights, SFT warm start.

`ensure_tiny_model()` is the entry point for runs, tests and demos. For the default config it returns
the build shipped in the repository (`SHIPPED_DIR`), so every user starts from the same weights: a
build's weights depend on the machine's float kernels, and greedy accuracy on a level moves by several
points between builds that differ only in that. Any other config is built on first use (under a file
lock, written to a temp folder and renamed into place) and cached. The cache key hashes the build
config and the source of the code that shapes the model (this package and the task generator), so
editing either yields a fresh build instead of a stale one, and a shipped build whose key no longer
matches is not used. Cache root: $GHPO_CACHE_DIR/models, else ~/.cache/ghpo/models. Not here:
evaluation or RL."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ghpo.shared.tasks import arith

CODE_VERSION = "1"
INFO_FILE = "ghpo_tiny.json"  # written last by a build: its config, key, size and build time
# The default config's build, committed with the code so that every user starts from the same weights (a
# build depends on the machine's float kernels and thread count; see docs/tiny-world.md). A slow test
# rebuilds it and compares the per-level hint table with the one stored beside it.
SHIPPED_DIR = Path(__file__).with_name("model")


@dataclass(frozen=True)
class TinyBuildConfig:
    """Everything that determines the built model (all of it enters the cache key)."""

    seed: int = 0
    vocab_size: int = 448  # BPE target before padding the embedding to a multiple of 64
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4  # head_dim = hidden_size / num_heads = 32
    num_kv_heads: int = 2
    intermediate_size: int = 512
    max_position_embeddings: int = 1024
    # The warm start (docs/tiny-world.md has the measurements behind it): the ladder's first five levels
    # (chains of + and - on 1..9 of one to four operations, and four on 1..20), half of the prompts with a
    # hint, written by a noisy teacher that slips (one too high) at each line after the hint with
    # probability 0.6 and carries on from its slip. The policy leaves it with the right step at about 0.4
    # a line: sampled, level 2 is right about 13% of the time and level 4 (trained on) 2.5%, so plain
    # groups of 8 on level 4 rarely hold a success while the 25/50/75% ladder rescues most of them; its
    # errors are choices RL can stop making, not arithmetic the model cannot do.
    sft_steps: int = 1800
    batch_size: int = 64
    lr: float = 5e-3
    warmup_steps: int = 30
    sft_mix: tuple[tuple[arith.LevelSpec, float], ...] = (
        (arith.LEVELS[1], 0.10),
        (arith.LEVELS[2], 0.20),
        (arith.LEVELS[3], 0.25),
        (arith.LEVELS[4], 0.25),
        (arith.LEVELS[5], 0.20),
    )
    hint_share: float = 0.5
    # The noisy teacher: each solution line after the hint is one too high with this probability, and the
    # chain carries on from the slip. 0 is a clean teacher.
    slip_probability: float = 0.6
    tokenizer_corpus_size: int = 4000
    # Fixed, because float reduction order (and so the weights) depends on it. One thread: two builds
    # (two candidate recipes) fit a 2-core machine side by side (about 1.9 s a step of 64 each).
    num_threads: int = 1

    def key(self) -> str:
        payload = json.dumps(dataclasses.asdict(self), sort_keys=True) + CODE_VERSION + _source_digest()
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _source_digest() -> str:
    digest = hashlib.sha256()
    for path in [*sorted(Path(__file__).parent.glob("*.py")), Path(arith.__file__)]:
        if path.name in ("evaluate.py", "__init__.py"):
            continue  # evaluation does not change the weights
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_root() -> Path:
    base = os.environ.get("GHPO_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "ghpo") / "models"


def _tokenizer_corpus(config: TinyBuildConfig) -> list[str]:
    from ghpo.trainer.tiny.prompts import HINT_PREFIX, assistant_target

    rng = random.Random(f"tiny-tokenizer:{config.seed}")
    # Fixed strings repeat so BPE merges them into a few tokens (short sequences = faster training).
    corpus = [HINT_PREFIX, "system\nuser\nassistant\nYou are a helpful assistant."] * 50
    for i in range(config.tokenizer_corpus_size):
        record = arith.to_record(arith.generate(1 + i % arith.MAX_LEVEL, rng))
        corpus += [record.problem, assistant_target(record)]
    return corpus


def build_tiny_model(config: TinyBuildConfig, out_dir: Path, log: Callable[[str], None] = print) -> Path:
    """Build the model described by `config` into `out_dir` (created; must not exist)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from ghpo.trainer.tiny import sft
    from ghpo.trainer.tiny.tokenizer import TOKENIZER_CLASS, train_tokenizer

    torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    start = time.monotonic()
    tokenizer = train_tokenizer(_tokenizer_corpus(config), config.vocab_size)
    padded_vocab = -(-len(tokenizer) // 64) * 64
    model_config = Qwen2Config(
        vocab_size=padded_vocab,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(model_config)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"tiny model: {n_params / 1e6:.2f}M parameters, vocab {len(tokenizer)} (padded {padded_vocab})")
    sft.train(
        model,
        tokenizer,
        seed=config.seed,
        steps=config.sft_steps,
        batch_size=config.batch_size,
        lr=config.lr,
        warmup_steps=config.warmup_steps,
        mix=config.sft_mix,
        hint_share=config.hint_share,
        slip=config.slip_probability,
        log=log,
    )
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=512,
    )
    out_dir.mkdir(parents=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    tok_config_path = out_dir / "tokenizer_config.json"
    tok_config = json.loads(tok_config_path.read_text())
    tok_config["tokenizer_class"] = TOKENIZER_CLASS
    tok_config_path.write_text(json.dumps(tok_config, indent=2))
    info = {
        "build_config": dataclasses.asdict(config),
        "torch": torch.__version__,
        "key": config.key(),
        "parameters": n_params,
        "build_seconds": round(time.monotonic() - start, 1),
    }
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2))
    log(f"tiny model built in {info['build_seconds']}s -> {out_dir}")
    return out_dir


def shipped_model(log: Callable[[str], None] = print) -> Path | None:
    """The committed build of the default config (`SHIPPED_DIR`), or None when it is absent or was built
    from other code than this (its recorded key differs: the recipe changed and it was not shipped again)."""
    info_path = SHIPPED_DIR / INFO_FILE
    if not info_path.exists():
        return None
    recorded = json.loads(info_path.read_text())["key"]
    if recorded != TinyBuildConfig().key():
        log(f"the shipped tiny model ({SHIPPED_DIR}) was built by other code (key {recorded}): building one")
        return None
    return SHIPPED_DIR


def ensure_tiny_model(
    config: TinyBuildConfig | None = None,
    *,
    cache_dir: Path | None = None,
    rebuild: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """The model folder for `config`: the shipped one for the default config, else the cached build,
    built first if absent (or if `rebuild`)."""
    config = config or TinyBuildConfig()
    if config == TinyBuildConfig() and not rebuild and cache_dir is None:
        shipped = shipped_model(log)
        if shipped is not None:
            return shipped
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"ghpo-tiny-{config.key()}"
    # One builder at a time per cache root: parallel tests wait for the first build instead of racing.
    with open(root / ".tiny.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        complete = (target / INFO_FILE).exists()  # written last, so present only on a full build
        if target.exists() and (rebuild or not complete):
            shutil.rmtree(target)
        if not target.exists():
            tmp = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=root))
            build_tiny_model(config, tmp / "model", log=log)
            os.replace(tmp / "model", target)
            shutil.rmtree(tmp)
    return target
