"""The inference service: vLLM generation for the rollout server, and the receiving end of the trainer's
versioned weight updates (HTTP, safetensors chunks and byte-range slices; on GPU, NCCL broadcast).

`engine` defines the engine interface and the drain gate that keeps every sample on one weights version;
`vllm_engine` is the vLLM implementation; `weights` and `slices` validate and stage pushed updates;
`nccl_api` receives NCCL updates, `nccl_client` sends them (trainer rank 0), `client` pushes over HTTP. See app.py for
the entry point (`create_app`). Nothing in this package is imported by `ghpo.shared`.
"""
