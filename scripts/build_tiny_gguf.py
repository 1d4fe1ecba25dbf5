"""Build a tiny random Llama GGUF for scripts/real-llamacpp.sh, entirely offline.

The llama.cpp twin of build_tiny_model.py: no weights can be downloaded here, and tmesh's tests
need a model llama-server treats exactly like a production Llama GGUF (the `llama` architecture,
a `gpt2`-style byte-level BPE vocabulary with merges, BOS/EOS ids, a chat template) but that
prefills a 6k-token prompt in well under a second on this CPU. So: random weights, seeded, written
with the `gguf` package, and a byte-level BPE tokenizer trained with `tokenizers` on local text
(the Python standard library's own sources, read in sorted order so every run gives the same
vocabulary). The tokenizer is also written as `tokenizer.json` next to the GGUF, for
`tmesh --tokenizer`; it prepends BOS like llama.cpp does (`add_bos_token`), so both count alike.

`--vocab` picks the vocabulary size: about 4096 makes ordinary English words mostly single tokens;
a few hundred (just past the 256 byte tokens) makes most words several tokens.

Random weights stop early whenever they happen to sample an end-of-sequence token, which would make
`completion_tokens` differ from the requested output length. So the model can never produce a
special token, whatever the client sends: one hidden dimension (`_BIAS_DIM`) is a constant 1.0 in
every token's embedding and no layer writes to it (its rows of `attn_output` and `ffn_down` are
zero), so after the final RMS norm it is a large positive constant; the output rows of the
unreachable tokens read only that dimension, with a large negative weight, and no other row reads
it. Their logits are then about -1000 at every position, a probability of exactly zero.

The same trick keeps the output valid UTF-8: tokens whose bytes are not valid UTF-8 on their own
(lone bytes >= 0x80, merges holding part of a multi-byte character) are unreachable too. Random
weights would otherwise emit a lone lead byte before an ASCII token, and llama-server's chat
output parser answers such text with HTTP 500 "The model produced output that does not match the
expected ... format" (in a stream: an error event after the first chunks). Prompts may still hold
any text; only what the model generates is restricted.

Run it with the venv of scripts/real-llamacpp.sh (it needs gguf, numpy and tokenizers):
    .real-llamacpp/venv/bin/python scripts/build_tiny_gguf.py OUT.gguf --vocab 4096
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
from pathlib import Path

import gguf
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SEED = 1234
HIDDEN = 128
LAYERS = 2
HEADS = 2
KV_HEADS = 1
HEAD_DIM = HIDDEN // HEADS
INTERMEDIATE = 384
CONTEXT_LENGTH = 8192
RMS_EPS = 1e-5
ROPE_THETA = 10000.0
INIT_STD = 0.02
CORPUS_BYTES = 3_000_000
BOS, EOS, PAD = "<s>", "</s>", "<pad>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [BOS, EOS, PAD, *ROLE_TOKENS]
MIN_VOCAB = 256 + len(SPECIAL_TOKENS) + 1
_BIAS_DIM = 0
_SPECIAL_LOGIT_WEIGHT = -100.0
# No `bos_token` here: llama-server tokenizes the rendered chat with add_special, so BOS comes from
# `tokenizer.ggml.add_bos_token`, exactly once.
CHAT_TEMPLATE = (
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


def train_tokenizer(files: list[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train(files, trainer)
    bos_id = tok.token_to_id(BOS)
    # Llama-style: the tokenizer itself prepends BOS, as llama.cpp does with add_bos_token.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return tok


def _byte_decoder() -> dict[str, int]:
    """The byte-level alphabet back to bytes: GPT-2's `bytes_to_unicode`, inverted."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def unreachable_ids(tokens: list[str]) -> list[int]:
    """Special tokens and tokens that are not valid UTF-8 on their own (see the docstring)."""
    decoder = _byte_decoder()
    special = set(SPECIAL_TOKENS)
    ids = []
    for token_id, piece in enumerate(tokens):
        if piece in special:
            ids.append(token_id)
            continue
        try:
            bytes(decoder[c] for c in piece).decode("utf-8")
        except UnicodeDecodeError:
            ids.append(token_id)
    return ids


def vocabulary(tok: Tokenizer) -> tuple[list[str], list[int], list[str]]:
    """Tokens in id order, their GGUF token types, and the merges as "left right" strings."""
    spec = json.loads(tok.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    tokens = [""] * len(vocab)
    for piece, token_id in vocab.items():
        tokens[token_id] = piece
    if "" in tokens:
        raise SystemExit("the trained vocabulary has gaps in its ids")
    special = set(SPECIAL_TOKENS)
    types = [int(gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL) for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    return tokens, types, merges


def build_weights(vocab_size: int, unreachable: list[int], dtype: type) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)

    def normal(*shape: int) -> np.ndarray:
        return rng.normal(0.0, INIT_STD, size=shape).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    embed = normal(vocab_size, HIDDEN)
    embed[:, _BIAS_DIM] = 1.0
    weights: dict[str, np.ndarray] = {"token_embd.weight": embed}
    for i in range(LAYERS):
        attn_norm, ffn_norm = ones(HIDDEN), ones(HIDDEN)
        attn_norm[_BIAS_DIM] = 0.0
        ffn_norm[_BIAS_DIM] = 0.0
        attn_out = normal(HIDDEN, HEADS * HEAD_DIM)
        attn_out[_BIAS_DIM, :] = 0.0
        ffn_down = normal(HIDDEN, INTERMEDIATE)
        ffn_down[_BIAS_DIM, :] = 0.0
        weights |= {
            f"blk.{i}.attn_norm.weight": attn_norm,
            f"blk.{i}.attn_q.weight": normal(HEADS * HEAD_DIM, HIDDEN),
            f"blk.{i}.attn_k.weight": normal(KV_HEADS * HEAD_DIM, HIDDEN),
            f"blk.{i}.attn_v.weight": normal(KV_HEADS * HEAD_DIM, HIDDEN),
            f"blk.{i}.attn_output.weight": attn_out,
            f"blk.{i}.ffn_norm.weight": ffn_norm,
            f"blk.{i}.ffn_gate.weight": normal(INTERMEDIATE, HIDDEN),
            f"blk.{i}.ffn_up.weight": normal(INTERMEDIATE, HIDDEN),
            f"blk.{i}.ffn_down.weight": ffn_down,
        }
    head = normal(vocab_size, HIDDEN)
    head[:, _BIAS_DIM] = 0.0
    for token_id in unreachable:
        head[token_id, :] = 0.0
        head[token_id, _BIAS_DIM] = _SPECIAL_LOGIT_WEIGHT
    weights["output_norm.weight"] = ones(HIDDEN)
    weights["output.weight"] = head
    # llama.cpp wants norms in float32; matrices take the chosen dtype.
    return {k: (v.astype(dtype) if v.ndim == 2 else v) for k, v in weights.items()}


def write_gguf(out: Path, tok: Tokenizer, dtype: type) -> None:
    tokens, types, merges = vocabulary(tok)
    special_ids = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(f"tmesh tiny random llama (vocab {len(tokens)})")
    writer.add_file_type(
        gguf.LlamaFileType.MOSTLY_F16 if dtype is np.float16 else gguf.LlamaFileType.ALL_F32
    )
    writer.add_vocab_size(len(tokens))
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(INTERMEDIATE)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(ROPE_THETA)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_tokenizer_model("gpt2")
    # "gpt-2": the GPT-2 pre-tokenizer regex, the one `tokenizers`' ByteLevel pre-tokenizer uses.
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(special_ids[0])
    writer.add_eos_token_id(special_ids[1])
    writer.add_pad_token_id(special_ids[2])
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    unreachable = unreachable_ids(tokens)
    for name, tensor in build_weights(len(tokens), unreachable, dtype).items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def build(out: Path, vocab_size: int, dtype: type) -> None:
    tok = train_tokenizer(corpus_files(), vocab_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    write_gguf(tmp, tok, dtype)
    tok.save(str(out.parent / "tokenizer.json"))
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="GGUF file to write (tokenizer.json goes beside it)")
    parser.add_argument(
        "--vocab",
        type=int,
        default=4096,
        help=f"vocabulary size, at least {MIN_VOCAB} (default 4096)",
    )
    parser.add_argument(
        "--dtype",
        choices=["f32", "f16"],
        default="f32",
        help="type of the weight matrices (default f32; norms are always f32)",
    )
    args = parser.parse_args(argv)
    if args.vocab < MIN_VOCAB:
        parser.error(f"--vocab must be at least {MIN_VOCAB} (256 bytes, specials, one merge)")
    build(args.out, args.vocab, np.float16 if args.dtype == "f16" else np.float32)
    print(f"tiny GGUF written to {args.out} (tokenizer.json beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
