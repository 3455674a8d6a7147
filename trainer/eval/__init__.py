"""Evaluation of a policy without hints: pass@1, avg@k and pass@k on the benchmarks and the synthetic task.

`ghpo eval` is its command line. The metrics and the problem sets are pure (no torch); generation talks to
an inference service over HTTP or runs the inference service's own vLLM engine class in this process;
scoring goes through the verifier service's worker pool (or a running verifier service).
"""
