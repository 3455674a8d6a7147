"""The inference service: vLLM generation for the rollout server, and the receiving end of the trainer's
versioned weight updates (HTTP, safetensors chunks and byte-range slices; on GPU, NCCL broadcast).

`engine` defines the engine interface and the drain gate that keeps every sample on one weights version;
`vllm_engine` is the vLLM implementation; `weights` and `slices` validate and stage pushed updates;
`api` serves generation and HTTP updates, `nccl_api` receives NCCL updates, `runtime` is what the routes
share. See app.py for the entry point (`create_app`). The sending side of updates is the trainer's
(trainer/train/push_http.py, push_nccl.py). Nothing in this package is imported by `ghpo.shared`, and
nothing here imports the trainer.
"""
