"""A small byte-level BPE tokenizer for the tiny model, trained offline with `tokenizers`.

Digits are always single tokens (Qwen2's split pattern) (arithmetic is learnable only if numbers are spelled digit by digit);
the full byte alphabet is kept so any text round-trips. The chat template is ChatML (as Qwen2 uses):
system/user/assistant turns between `<|im_start|>` and `<|im_end|>`; `<|im_end|>` is the EOS token and
`<|endoftext|>` the pad token. The reasoning tags are added tokens that are not special, so they survive
`skip_special_tokens=True` decoding. Not here: the model or any training loop.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, IM_START, EOS_TOKEN]
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>", "\\boxed{"]

QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TOKENIZER_CLASS = "Qwen2Tokenizer"  # what tokenizer_config.json names, so every loader picks Qwen2's class

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    # Exactly Qwen2's normalizer and pre-tokenizer (digits split one by one): transformers 5 loads this
    # folder as a Qwen2Tokenizer and re-applies Qwen2's pre-tokenizer, so anything else would make the
    # tokenization at load time differ from the one the model was trained with.
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in TAG_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN, padding_side="left"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 2048
    return fast
