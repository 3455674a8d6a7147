"""Methods added to vLLM's worker processes (`worker_extension_cls`), called by name with `collective_rpc`.

`ghpo_merge_adapter(base, adapter, scaling)` loads the same way the base weights with a LoRA adapter
merged in (ghpo.services.inference.adapters). `ghpo_reload_weights(folder)` is vLLM's own in-place
`reload_weights` (every *.safetensors in `folder`,
checkpoint names, any float dtype) followed by re-tying the output head to the input embedding
(`ghpo_retie_head`, also called after an NCCL weight transfer). Why:
in vLLM 0.32 the layer-wise reload gives `embed_tokens` a fresh tensor, so a model with tied embeddings
(small Qwen2 models, our tiny model) keeps the *old* matrix in `lm_head` (and, on CPU, its old packed
GEMM weight) and samples from a mix of two versions (measured: sampled-token log-probs off by ~1.5 nats
after one update; equal to transformers within 1e-6 once re-tied and re-packed). Plain `model.load_weights` is no alternative on CPU: vLLM repacks linear weights after loading
and leaves the original parameters empty. Runs inside vLLM's worker process.
"""

from __future__ import annotations


class GhpoWorkerExtension:
    """Mixed into vLLM's worker class; `self` is the worker."""

    def ghpo_reload_weights(self, folder: str) -> bool:
        """Load `folder` in place; returns whether the output head was re-tied."""
        self.reload_weights(weights_path=folder)  # type: ignore[attr-defined]
        return self.ghpo_retie_head()

    def ghpo_merge_adapter(self, base_folder: str, adapter_folder: str, scaling: float) -> bool:
        """Serve `base + scaling * B @ A` (adapters.merged_weights): the base folder's weights, streamed
        with the adapter merged in, through the same in-place reload; returns whether the head was re-tied."""
        from ghpo.services.inference.adapters import merged_weights

        self.reload_weights(weights_iterator=merged_weights(base_folder, adapter_folder, scaling))  # type: ignore[attr-defined]
        return self.ghpo_retie_head()

    def ghpo_retie_head(self) -> bool:
        """Re-tie the output head to the (freshly reloaded) input embedding, if the model ties them.

        Also needed after an NCCL update: vLLM's weight-transfer engine uses the same layer-wise reload.
        """
        model = self.model_runner.get_model()  # type: ignore[attr-defined]
        config = getattr(model, "config", None)
        embed = getattr(getattr(model, "model", None), "embed_tokens", None)
        head = getattr(model, "lm_head", None)
        if not getattr(config, "tie_word_embeddings", False) or embed is None or head is None:
            return False
        model.lm_head = head = head.tie_weights(embed)
        # The head keeps its own post-load form of the matrix (on CPU a packed GEMM weight): rebuild it.
        head.quant_method.process_weights_after_loading(head)
        return True
