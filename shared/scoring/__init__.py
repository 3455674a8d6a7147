"""Scoring a completion against a gold answer: the verifier's pure scoring, importable anywhere.

Modules:
- `answers`  math-verify parsing and comparison: `parse_gold`, `extract_answer`, `score` (accuracy, format,
             status), the reference reward weights.
- `rewards`  reward functions by name (the registry the verifier's requests pick from) and weighted totals.
- `boxes`    the content of a text's last `\\boxed{}` (no math-verify).

The verifier service runs these in its worker processes; the prompt loaders, evaluation, the tiny model's
accuracy table and the benches call them directly, so every score is computed by the same code. Nothing
here knows about processes, deadlines or HTTP (the verifier service, services/verifier/), and nothing
imports torch. math-verify is imported by `answers` (and so `rewards`) only. Nothing is re-exported.
"""
