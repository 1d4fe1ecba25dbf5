"""Build the tiny random Llama that scripts/real-vllm.sh serves, entirely offline.

No weights can be downloaded here, and the real-engine tests need a model vLLM treats exactly like a
production Llama (same architecture, paged KV cache, prefix caching, tokenizer, chat template) but
that prefills a 6k-token prompt in about a second on one CPU core (float32: on CPUs without native
bfloat16, bfloat16 matmuls are several times slower). So: a random-initialised
`LlamaForCausalLM`, seeded, with a byte-level BPE tokenizer trained on local text (the Python
standard library's own sources, read in sorted order so the result is the same on every run).

Random weights stop early whenever they happen to sample an end-of-sequence token, which would make
`completion_tokens` differ from the requested output length. The benchmark sends `ignore_eos`, but
the model must not depend on a client flag to be a fair target, so it is built so that it can never
produce a special token: one hidden dimension (`_BIAS_DIM`) is a constant 1.0 in every token's
embedding and no layer writes to it, so after the final norm it is a large positive constant; the
language-model head rows of the special tokens read only that dimension, with a large negative
weight. Their logits are then about -1500 at every position, a probability of exactly zero.

Run it with the vLLM venv's Python (it needs torch and transformers):
    .real-vllm/venv/bin/python scripts/build_tiny_model.py OUT_DIR
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SEED = 1234
VOCAB_SIZE = 4096
HIDDEN = 128
LAYERS = 2
HEADS = 2
KV_HEADS = 1
INTERMEDIATE = 384
MAX_POSITIONS = 8192
CORPUS_BYTES = 3_000_000
BOS, EOS, PAD = "<s>", "</s>", "<pad>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [BOS, EOS, PAD, *ROLE_TOKENS]
_BIAS_DIM = 0
_SPECIAL_LOGIT_WEIGHT = -100.0
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def corpus_files(limit_bytes: int = CORPUS_BYTES) -> list[str]:
    """The stdlib's top-level modules in name order, up to `limit_bytes`: English docstrings and
    comments plus code, present on every Python install, so no text has to be shipped or fetched."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    chosen: list[str] = []
    total = 0
    for path in sorted(stdlib.glob("*.py")):
        size = path.stat().st_size
        if total + size > limit_bytes:
            break
        chosen.append(str(path))
        total += size
    return chosen


def train_tokenizer(files: list[str]) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train(files, trainer)
    bos_id = tok.token_to_id(BOS)
    # Llama-style: the tokenizer itself prepends BOS, so /tokenize and the engine count it alike.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=MAX_POSITIONS,
    )
    wrapped.add_special_tokens({"additional_special_tokens": ROLE_TOKENS})
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_model(special_ids: list[int], dtype: torch.dtype) -> LlamaForCausalLM:
    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=special_ids[0],
        eos_token_id=special_ids[1],
        pad_token_id=special_ids[2],
    )
    model = LlamaForCausalLM(config)
    make_specials_unreachable(model, special_ids)
    return model.to(dtype)


@torch.no_grad()
def make_specials_unreachable(model: LlamaForCausalLM, special_ids: list[int]) -> None:
    """See the module docstring: a constant hidden dimension only special tokens' logits read."""
    embed = model.model.embed_tokens.weight
    embed[:, _BIAS_DIM] = 1.0
    for layer in model.model.layers:
        layer.self_attn.o_proj.weight[_BIAS_DIM, :] = 0.0
        layer.mlp.down_proj.weight[_BIAS_DIM, :] = 0.0
        layer.input_layernorm.weight[_BIAS_DIM] = 0.0
        layer.post_attention_layernorm.weight[_BIAS_DIM] = 0.0
    head = model.lm_head.weight
    head[:, _BIAS_DIM] = 0.0
    for token_id in special_ids:
        head[token_id, :] = 0.0
        head[token_id, _BIAS_DIM] = _SPECIAL_LOGIT_WEIGHT


def build(out_dir: Path, dtype: torch.dtype) -> None:
    tokenizer = train_tokenizer(corpus_files())
    special_ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    model = build_model(special_ids, dtype)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="directory to write the model into")
    parser.add_argument(
        "--dtype",
        choices=["bfloat16", "float32"],
        default="float32",
        help="dtype of the saved weights (default float32)",
    )
    args = parser.parse_args(argv)
    build(args.out_dir, getattr(torch, args.dtype))
    print(f"tiny model written to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
