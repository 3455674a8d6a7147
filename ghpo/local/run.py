"""`ghpo run`: the whole GHPO system on one machine, trained end to end, with progress and a report.

Order: Redis (data in the run folder, so a resume finds the queue, the cursor and the broker state) ->
verifier, broker, inference, rollout server (`ghpo serve <name>`, each ready on /readyz) -> held-out
evaluation of the starting weights -> trainer (`ghpo train`), which pulls batches, trains, pushes weights
and checkpoints. While it trains, the trainer's per-step lines are copied into `history.jsonl`, the
progress bar shows step, held-out accuracy, difficult fraction and hint levels, and the held-out set is
evaluated every `run.eval_every` steps through the same inference service (greedy, no hints). The run
ends when the trainer has taken `run.steps` steps, the time budget is spent, or the rollout server has
generated `run.max_rollouts` completions (the generation budget: equal budgets compare methods fairly);
then the trainer is asked to stop and checkpoints, and a final evaluation, `end.json` (why it stopped,
the rollout server's final counters), `report.md` and the plots follow. Every history line carries the
rollout server's generation counters when it was written (`rollout`), so figures can be set against
completions generated rather than steps.

Ctrl-C stops the trainer first (it checkpoints on SIGTERM), then the services in reverse order;
`ghpo run --resume` carries on from the last checkpoint with the same run folder.
What it deliberately does not do: restart a crashed component (the run stops and says which one, with
the tail of its log; `--resume` continues), or run on several machines (compose, Kubernetes).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ghpo.local.config import RunConfig
from ghpo.local.exits import exit_description
from ghpo.local.export import export_at_end
from ghpo.local.heldout import evaluate_heldout
from ghpo.local.preflight import preflight
from ghpo.local.processes import Child, Supervisor
from ghpo.local.report import append_history, level_order, load_history, write_report
from ghpo.local.stack import Endpoints, service_specs, trainer_spec, trainer_toml
from ghpo.shared.http import SyncServiceClient
from ghpo.shared.redis_local import LocalRedis
from ghpo.shared.schemas.rollout import RolloutStatus

CONFIG_FILE = "run-config.json"
TRAINER_STEPS_FILE = "trainer-steps.jsonl"
ENDPOINTS_FILE = "endpoints.json"
END_FILE = "end.json"


class RunError(RuntimeError):
    """The run cannot start or continue; the message says why and what to do."""


def prepare_run_dir(run_dir: Path, cfg: RunConfig | None, resume: bool, log: Any = print) -> RunConfig:
    """Create or reopen the run folder; a resumed run keeps the config it started with. Returns the config
    checked and resolved for this machine (ghpo.local.preflight), before anything is written."""
    saved = run_dir / CONFIG_FILE
    if resume:
        if not saved.exists():
            raise RunError(f"--resume: {run_dir} holds no run (no {CONFIG_FILE}); start one without --resume")
        stored = RunConfig.model_validate_json(saved.read_text())
        if cfg is not None and cfg != stored:
            raise RunError(f"--resume with a different config than {saved}: resume without --config")
        return preflight(stored, log)
    if saved.exists():
        raise RunError(
            f"{run_dir} already holds a run: pass --resume to continue it, or choose another --run-dir"
        )
    cfg = cfg or RunConfig()
    resolved = preflight(cfg, log)
    run_dir.mkdir(parents=True, exist_ok=True)
    saved.write_text(cfg.model_dump_json(indent=2))
    return resolved


def rollout_counters(client: SyncServiceClient) -> dict[str, Any]:
    """The rollout server's all-time generation counters (durable in Redis: a resume continues them)."""
    status = client.request_json("GET", "/v1/status", response_model=RolloutStatus)
    return {
        "completions_generated": status.completions_generated,
        "groups_sampled": status.groups_sampled,
        "difficult_groups": status.difficult_groups,
        "no_signal_groups": status.no_signal_groups,
        "acked_groups": status.acked_groups,
        "groups_dropped": {str(reason): n for reason, n in status.dropped.items()},
    }


def stop_reason(
    cfg: RunConfig, step: int, counters: dict[str, Any], now: float, deadline: float
) -> str | None:
    """Why the run must stop now (generation or time budget spent), or None; steps end by themselves."""
    budget = cfg.run.max_rollouts
    if budget is not None and counters["completions_generated"] >= budget:
        return f"generation budget of {budget} completions spent at step {step}"
    if now > deadline:
        return f"time budget of {cfg.run.max_minutes} min spent at step {step}"
    return None


class TrainerSteps:
    """Reads the trainer's per-step lines as they are appended (a resumed trainer appends more)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0

    def new_records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open() as f:
            f.seek(self.offset)
            text = f.read()
        complete, _, _partial = text.rpartition("\n")  # a line being written is read next time
        if not complete:
            return []
        self.offset += len(complete) + 1
        return [json.loads(line) for line in complete.splitlines() if line.strip()]


def _summary_line(step: int, steps: int, accuracy: dict[str, float], last: dict[str, Any] | None) -> str:
    acc = " ".join(
        f"L{lvl} {v:.0%}" for lvl, v in sorted(accuracy.items(), key=lambda kv: level_order(kv[0]))
    )
    if last is None:
        return f"step {step}/{steps} | held-out {acc}"
    levels = " ".join(
        f"{lvl}:{n}" for lvl, n in sorted(last["groups_by_level"].items(), key=lambda kv: int(kv[0]))
    )
    return (
        f"step {step}/{steps} | held-out {acc} | difficult {last['difficult_fraction']:.0%} "
        f"| zero-adv {last['zero_advantage_fraction']:.0%} | hint levels {levels}"
    )


def run(cfg: RunConfig, run_dir: Path, *, resume: bool = False, log: Any = print) -> Path:
    """Run (or resume) the local system; returns the report's path. Raises RunError or ProcessFailed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ghpo.trainer.tiny.build import ensure_tiny_model

    run_dir = Path(run_dir).resolve()
    cfg = prepare_run_dir(run_dir, cfg, resume, log)
    model_path = Path(cfg.model.path) if cfg.model.path else ensure_tiny_model(log=log)
    started = time.monotonic()
    redis = LocalRedis(run_dir / "redis").start()
    try:
        ends = Endpoints.allocate(redis.url)
        # Where this invocation's services listen (ports change on --resume): for curl, Prometheus, tests.
        (run_dir / ENDPOINTS_FILE).write_text(json.dumps(ends.public(), indent=2))
        with (
            Supervisor(run_dir) as sup,
            SyncServiceClient(
                ends.url("rollout"), token=ends.token, timeout=10.0, total_budget=30.0
            ) as rollout,
        ):
            for spec in service_specs(cfg, model_path, run_dir, ends):
                log(f"starting {spec.name} ...")
                sup.start(spec)
            config_path = run_dir / "trainer.toml"
            config_path.write_text(trainer_toml(cfg, model_path, run_dir, ends))
            steps_seen, evals = load_history(run_dir)
            last_step = steps_seen[-1]["step"] if steps_seen else 0
            if not evals:
                log("evaluating the starting model on the held-out set ...")
                accuracy = _record_eval(cfg, ends, run_dir, 0, started, rollout_counters(rollout))
            else:
                accuracy = evals[-1]["accuracy_by_level"]
            reader = TrainerSteps(run_dir / TRAINER_STEPS_FILE)
            # Steps the trainer logged after the last copy (it finishes its step when stopped) are
            # copied now; later lines, a resumed trainer's, are all new.
            counters = rollout_counters(rollout)
            last_record = _copy_steps(reader, run_dir, started, counters, after=last_step) or (
                steps_seen[-1] if steps_seen else None
            )
            last_step = last_record["step"] if last_record else 0
            trainer = sup.start(trainer_spec(cfg, config_path, ends))
            trainer_started = round(time.monotonic() - started, 2)
            next_eval = (last_step // cfg.run.eval_every + 1) * cfg.run.eval_every
            deadline = started + 60 * cfg.run.max_minutes
            reason = None
            columns = (
                TextColumn("[bold]ghpo"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
            )
            with Progress(*columns, transient=False) as progress:
                task = progress.add_task(
                    _summary_line(last_step, cfg.run.steps, accuracy, last_record),
                    total=cfg.run.steps,
                    completed=last_step,
                )
                while trainer.process.poll() is None:
                    _check_services(sup, trainer)
                    counters = rollout_counters(rollout)
                    last_record = _copy_steps(reader, run_dir, started, counters) or last_record
                    last_step = last_record["step"] if last_record else last_step
                    if last_step >= next_eval and last_step < cfg.run.steps:
                        accuracy = _record_eval(cfg, ends, run_dir, last_step, started, counters)
                        next_eval = (last_step // cfg.run.eval_every + 1) * cfg.run.eval_every
                    progress.update(
                        task,
                        completed=last_step,
                        description=_summary_line(last_step, cfg.run.steps, accuracy, last_record),
                    )
                    reason = stop_reason(cfg, last_step, counters, time.monotonic(), deadline)
                    if reason is not None:
                        log(f"{reason}: stopping the trainer")
                        sup.stop(trainer)
                        break
                    time.sleep(1.0)
            counters = rollout_counters(rollout)
            last_record = _copy_steps(reader, run_dir, started, counters) or last_record
            last_step = last_record["step"] if last_record else last_step
            code = trainer.process.returncode
            if code not in (0, None) and reason is None:
                raise trainer.failure(exit_description(code, trainer.log_tail(), cfg))
            end = {
                "stop_reason": reason or f"trainer finished at step {last_step}",
                "step": last_step,
                "elapsed_s": round(time.monotonic() - started, 2),
                "trainer_started_s": trainer_started,
                "rollout": counters,
            }
            (run_dir / END_FILE).write_text(json.dumps(end, indent=2))
            _record_eval(cfg, ends, run_dir, last_step, started, counters)
    finally:
        redis.stop()
    export_at_end(run_dir, cfg.run.export, log)
    return write_report(run_dir, _facts(cfg, model_path, run_dir, started))


def _copy_steps(
    reader: TrainerSteps, run_dir: Path, started: float, counters: dict[str, Any], after: int = -1
) -> dict[str, Any] | None:
    """Copy the trainer's new step lines (those past step `after`) into the history, with the rollout
    counters read just before (at most a poll period after the step ended); returns the last."""
    last = None
    for record in reader.new_records():
        if record["step"] > after:
            elapsed = round(time.monotonic() - started, 2)
            last = {"kind": "step", **record, "elapsed_s": elapsed, "rollout": counters}
            append_history(run_dir, last)
    return last


def _record_eval(
    cfg: RunConfig, ends: Endpoints, run_dir: Path, step: int, started: float, counters: dict[str, Any]
) -> dict[str, float]:
    accuracy = evaluate_heldout(cfg, ends)
    if cfg.run.eval == "off":
        return accuracy
    elapsed = round(time.monotonic() - started, 2)
    record = {"kind": "eval", "step": step, "elapsed_s": elapsed, "accuracy_by_level": accuracy}
    append_history(run_dir, record | {"rollout": counters})
    return accuracy


def _check_services(sup: Supervisor, trainer: Child) -> None:
    for child in sup.children:
        if child is not trainer and child.process.poll() is not None:
            raise child.failure(f"exited with code {child.process.returncode} during the run")


def _facts(cfg: RunConfig, model_path: Path, run_dir: Path, started: float) -> dict[str, Any]:
    end = json.loads((run_dir / END_FILE).read_text())
    counters = end["rollout"]
    budget = f" (budget {cfg.run.max_rollouts})" if cfg.run.max_rollouts is not None else ""
    return {
        "model": model_path,
        "dataset": cfg.data.dataset
        + (f" levels {cfg.data.arith_levels}" if cfg.data.dataset == "arith" else ""),
        "GHPO": f"ladder {list(cfg.ghpo.hint_ladder)}, cold start {cfg.ghpo.cold_start_steps} steps, "
        f"G = {cfg.rollout.group_size}, {cfg.rollout.batch_groups} groups per step, "
        f"lag <= {cfg.rollout.max_policy_lag}",
        "hint policy": f"broker {cfg.services.broker_policy}, "
        f"dynamic sampling {cfg.rollout.dynamic_sampling}",
        "stopped": end["stop_reason"],
        "completions generated": f"{counters['completions_generated']}{budget}, "
        f"{counters['groups_sampled']} groups sampled, "
        f"{counters['acked_groups']} acknowledged by the trainer",
        "wall time of this invocation": f"{(time.monotonic() - started) / 60:.1f} min",
        "run folder": run_dir,
    }
