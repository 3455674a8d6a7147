"""The inference service: vLLM generation for the rollout server, and the receiving end of the trainer's
versioned weight updates (HTTP, safetensors chunks).

`engine` defines the engine interface and the drain gate that keeps every sample on one weights version;
`vllm_engine` is the vLLM implementation; `weights` validates and stages pushed updates. See app.py for
the entry point (`create_app`). Nothing in this package is imported by `ghpo.shared`.
"""
