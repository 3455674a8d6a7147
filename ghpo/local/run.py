"""`ghpo run`: the whole GHPO system on one machine, trained end to end, with progress and a report.

Order: Redis (data in the run folder, so a resume finds the queue, the cursor and the broker state) ->
verifier, broker, inference, rollout server (`ghpo serve <name>`, each ready on /readyz) -> held-out
evaluation of the starting weights -> trainer (`ghpo train`), which pulls batches, trains, pushes weights
and checkpoints. While it trains, the watch loop (once a second) heals (healing.py: a process that dies
is restarted on its port, the trainer from its latest checkpoint; a crash loop stops the run), copies
the trainer's step lines into `history.jsonl` (history.py: a redone step replaces its old record), shows
progress (progress.py), warns when batches have nothing trainable, and evaluates the held-out set every
`run.eval_every` steps through the same inference service (greedy, no hints). The run ends when the
trainer has taken `run.steps` steps, the time budget is spent, or the rollout server has generated
`run.max_rollouts` completions (the generation budget: equal budgets compare methods fairly); then the
trainer is asked to stop and given a grace measured from its step and checkpoint times (stopping.py),
and a final evaluation, `end.json` (why it stopped, the restarts, the rollout server's final counters),
`report.md` and the plots follow. Every history line carries the rollout server's generation counters
when it was written (`rollout`), so figures can be set against completions generated rather than steps.

Ctrl-C (or SIGTERM) stops the trainer the same way, then the services in reverse order; `ghpo run
--resume` carries on from the last checkpoint with the same run folder. Every process and everything it
started is ended when `ghpo run` returns (processes.py). What it deliberately does not do: run on several
machines (compose, Kubernetes), or restart a process that keeps crashing (the run stops and says which,
with the tail of its log; `--resume` continues once it is fixed).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from ghpo.local.config import RunConfig
from ghpo.local.exits import explain_exit
from ghpo.local.export import export_at_end
from ghpo.local.healing import TRAINER, CrashLoop, heal
from ghpo.local.heldout import evaluate_heldout
from ghpo.local.history import HistoryCopy, append_history, load_history, trained_groups
from ghpo.local.preflight import preflight
from ghpo.local.processes import Child, RestartPolicy, Supervisor
from ghpo.local.progress import RunView
from ghpo.local.report import write_report
from ghpo.local.stack import Endpoints, redis_spec, service_specs, trainer_spec, trainer_toml
from ghpo.local.stopping import stop_grace, stopped_line, stopping_line
from ghpo.shared.errors import GhpoError
from ghpo.shared.http import SyncServiceClient
from ghpo.shared.schemas.rollout import RolloutStatus
from ghpo.shared.schemas.trainer import TrainerStatus

CONFIG_FILE = "run-config.json"
ENDPOINTS_FILE = "endpoints.json"
END_FILE = "end.json"
POLL_S = 1.0


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
    """The rollout server's generation counters (durable in Redis: a resume continues them)."""
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


class LocalRun:
    """One invocation of `ghpo run` once its processes are up: the watch loop and the ways it ends."""

    def __init__(self, cfg: RunConfig, run_dir: Path, sup: Supervisor, ends: Endpoints, view: RunView):
        self.cfg, self.run_dir, self.sup, self.ends, self.view = cfg, run_dir, sup, ends, view
        self.started = sup.started  # one clock for steps, evaluations and restarts: since the start
        self.copy = HistoryCopy(run_dir)
        self.counters: dict[str, Any] = {}
        self.eval_failed: int | None = None
        # Short budgets: a service being restarted must not hold the loop up (its figures wait a second).
        self.rollout = SyncServiceClient(
            ends.url("rollout"), token=ends.token, timeout=5.0, total_budget=5.0, max_attempts=2
        )
        self.trainer_api = SyncServiceClient(
            ends.url("trainer"), token=ends.token, timeout=2.0, total_budget=2.0, max_attempts=1
        )

    def close(self) -> None:
        self.rollout.close()
        self.trainer_api.close()

    # ---- figures
    def refresh_counters(self) -> dict[str, Any]:
        with contextlib.suppress(GhpoError):  # being restarted: keep the last figures
            self.counters = rollout_counters(self.rollout)
        return self.counters

    def copy_steps(self) -> list[dict[str, Any]]:
        before = self.copy.last_step
        extra = {"elapsed_s": round(time.monotonic() - self.started, 2), "rollout": self.counters}
        records = self.copy.copy(extra)
        if records and records[0]["step"] <= before:
            self.view.rolled_back(records[0]["step"] - 1)
        return records

    def accuracy(self) -> dict[str, float]:
        _, evals = load_history(self.run_dir)
        return evals[-1]["accuracy_by_level"] if evals else {}

    def evaluate(self, step: int) -> dict[str, float] | None:
        """Evaluate and record the held-out set at `step`; None when a service it needs is down."""
        try:
            result = evaluate_heldout(self.cfg, self.ends)
        except Exception as exc:  # a service being restarted: the next poll tries again
            if self.eval_failed != step:
                self.view.note(f"held-out evaluation at step {step} failed ({type(exc).__name__}); retrying")
            self.eval_failed = step
            return None
        self.eval_failed = None
        if self.cfg.run.eval == "off":
            return result.greedy
        elapsed = round(time.monotonic() - self.started, 2)
        record = {"kind": "eval", "step": step, "elapsed_s": elapsed, "accuracy_by_level": result.greedy}
        if result.sampled:
            record |= {"sampled_accuracy_by_level": result.sampled, "eval_samples": self.cfg.run.eval_samples}
        append_history(self.run_dir, record | {"rollout": self.counters})
        return result.greedy

    def eval_due(self, step: int) -> bool:
        _, evals = load_history(self.run_dir)
        last_eval = evals[-1]["step"] if evals else -1
        every = self.cfg.run.eval_every
        return step < self.cfg.run.steps and step >= (last_eval // every + 1) * every

    def empty_batches(self) -> None:
        try:
            status = self.trainer_api.request_json("GET", "/v1/status", response_model=TrainerStatus)
        except GhpoError:
            return
        self.view.empty_batches(status.consecutive_empty_batches)

    def explain(self, child: Child) -> str:
        return explain_exit(child, self.cfg)

    # ---- the loop
    def watch(self) -> str | None:
        """Heal, copy, show, evaluate until the trainer ends or a budget is spent; returns the stop reason
        (None: the trainer finished by itself)."""
        deadline = self.started + 60 * self.cfg.run.max_minutes
        while True:
            ended = heal(self.sup, self.run_dir, self.copy.last_step, self.view.note, self.explain)
            if ended is not None:
                code = ended.process.returncode
                if code != 0:
                    raise ended.failure(self.explain(ended))
                return None
            self.refresh_counters()
            self.view.steps_done(self.copy_steps(), self.accuracy())
            step = self.copy.last_step
            if self.eval_due(step) and (accuracy := self.evaluate(step)) is not None:
                self.view.held_out(step, accuracy)
            self.empty_batches()
            now = time.monotonic()
            if self.counters and (reason := stop_reason(self.cfg, step, self.counters, now, deadline)):
                return reason
            time.sleep(POLL_S)

    def stop_trainer(self) -> None:
        """SIGTERM with a grace measured from the trainer's own step and checkpoint times; says what it
        left (and what was lost if the trainer had to be killed)."""
        trainer = self.sup.child(TRAINER)
        if trainer is None or trainer.process.poll() is not None:
            return
        steps, _ = load_history(self.run_dir)
        grace = stop_grace(self.cfg.run.stop_grace_s, steps)
        self.view.note(stopping_line(grace, self.copy.last_step))
        self.sup.stop(trainer, grace.seconds)
        killed = trainer.process.returncode is not None and trainer.process.returncode < 0
        self.refresh_counters()
        self.copy_steps()
        self.view.note(stopped_line(self.run_dir, self.copy.last_step, killed, grace))

    def write_end(self, reason: str, **extra: Any) -> dict[str, Any]:
        steps, _ = load_history(self.run_dir)
        trained, skipped = trained_groups(steps)
        end = {
            "stop_reason": reason,
            "step": self.copy.last_step,
            "elapsed_s": round(time.monotonic() - self.started, 2),
            "restarts": [r.record() for r in self.sup.restarts],
            "groups_trained": trained,
            "groups_skipped": skipped,
            "rollout": self.counters,
            **extra,
        }
        (self.run_dir / END_FILE).write_text(json.dumps(end, indent=2))
        return end


def run(cfg: RunConfig, run_dir: Path, *, resume: bool = False, log: Any = print) -> Path:
    """Run (or resume) the local system; returns the report's path. Raises RunError or ProcessFailed
    (CrashLoop among them); KeyboardInterrupt after a clean stop."""
    from ghpo.trainer.tiny.build import ensure_tiny_model

    run_dir = Path(run_dir).resolve()
    cfg = prepare_run_dir(run_dir, cfg, resume, log)
    model_path = Path(cfg.model.path) if cfg.model.path else ensure_tiny_model(log=log)
    started = time.monotonic()
    ends = Endpoints.allocate()
    # Where this invocation's processes listen (ports change on --resume, not on restarts).
    (run_dir / ENDPOINTS_FILE).write_text(json.dumps(ends.public(), indent=2))
    policy = RestartPolicy(cfg.run.crash_loop_restarts, cfg.run.crash_loop_window_s)
    with Supervisor(run_dir, policy=policy, seed=cfg.run.seed) as sup, RunView(cfg) as view:
        for spec in [redis_spec(cfg, run_dir, ends), *service_specs(cfg, model_path, run_dir, ends)]:
            log(f"starting {spec.name} ...")
            sup.start(spec)
        config_path = run_dir / "trainer.toml"
        config_path.write_text(trainer_toml(cfg, model_path, run_dir, ends))
        local = LocalRun(cfg, run_dir, sup, ends, view)
        try:
            local.refresh_counters()
            local.copy_steps()  # lines the trainer wrote after the last copy (it finished its step)
            if not load_history(run_dir)[1]:
                log("evaluating the starting model on the held-out set ...")
                if local.evaluate(0) is None:
                    raise RunError("the held-out evaluation of the starting model failed: see logs/")
            sup.start(trainer_spec(cfg, config_path, ends))
            trainer_started = round(time.monotonic() - started, 2)
            steps, _ = load_history(run_dir)
            view.start(local.copy.last_step, local.accuracy(), steps[-1] if steps else None)
            try:
                reason = local.watch()
            except (KeyboardInterrupt, CrashLoop):  # no end.json: the run is not over (--resume)
                local.stop_trainer()
                raise
            if reason is not None:
                view.note(f"{reason}: stopping the trainer")
                local.stop_trainer()
            local.refresh_counters()
            local.copy_steps()
            last = local.copy.last_step
            local.write_end(reason or f"trainer finished at step {last}", trainer_started_s=trainer_started)
            if local.evaluate(last) is not None:
                view.held_out(last, local.accuracy())
        finally:
            local.close()
    export_at_end(run_dir, cfg.run.export, log)
    return write_report(run_dir, _facts(cfg, model_path, run_dir, started))


def _facts(cfg: RunConfig, model_path: Path, run_dir: Path, started: float) -> dict[str, Any]:
    end = json.loads((run_dir / END_FILE).read_text())
    counters = end["rollout"]
    budget = f" (budget {cfg.run.max_rollouts})" if cfg.run.max_rollouts is not None else ""
    restarts = end.get("restarts", [])
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
        "completions generated": f"{counters.get('completions_generated', 0)}{budget}, "
        f"{counters.get('groups_sampled', 0)} groups sampled",
        "groups acknowledged by the trainer": f"{counters.get('acked_groups', 0)}: the final model was "
        f"trained on {end['groups_trained']}, and {end['groups_skipped']} were in batches with nothing "
        "trainable (a step redone after a restart or resume counts once)",
        "restarts in this invocation": ", ".join(f"{r['process']} ({r['exit']})" for r in restarts) or "none",
        "wall time of this invocation": f"{(time.monotonic() - started) / 60:.1f} min",
        "run folder": run_dir,
    }
