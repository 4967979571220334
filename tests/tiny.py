"""Tiny random-weight models with offline word-level tokenizers, for tests, benchmarks and the demo.

make_tiny_model(family, folder, texts) writes a model of `family` (gpt2, llama, t5 or bert) with 2 blocks of
width 32 (by default) and a tokenizer whose vocabulary covers `texts`, as save_pretrained writes them, so
models.extract(str(folder), ...) loads it like any local model. The tokenizers mimic their family's framing:
GPT-2 byte-level without BOS, LLaMA with <s>, T5 with </s>, BERT with [CLS] ... [SEP] and lower case.
Leaves out: trained weights (the numbers mean nothing), subword merges (one token per word or punctuation).
Run: python tests/tiny.py gpt2 FOLDER "Some text." "More text."
"""
import sys
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from models import prepare_context  # noqa: E402

FAMILIES = {  # family -> special tokens (vocabulary order), their roles, pre-tokenizer, template, model class
    "gpt2": (["<|endoftext|>", "<unk>"], ["bos", "unk"], "bytelevel", None, "AutoModelForCausalLM"),
    "llama": (["<unk>", "<s>", "</s>"], ["unk", "bos", "eos"], "metaspace", "<s> $A", "AutoModelForCausalLM"),
    "t5": (["<pad>", "</s>", "<unk>"], ["pad", "eos", "unk"], "metaspace", "$A </s>",
           "AutoModelForSeq2SeqLM"),
    "bert": (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], ["pad", "unk", "cls", "sep", "mask"], "bert",
             "[CLS] $A [SEP]", "AutoModel"),
}


def tiny_tokenizer(family: str, texts: list[str], max_positions: int) -> transformers.PreTrainedTokenizerFast:
    """A word-level fast tokenizer whose vocabulary holds every pre-token of the texts, of each text with a
    leading space, and of their joined context (so no covered text ever meets an unknown token)."""
    from tokenizers import Tokenizer, models as tm, normalizers, pre_tokenizers, processors
    specials, roles, pre, template, _ = FAMILIES[family]
    named = {f"{role}_token": s for s, role in zip(specials, roles)}
    pre_tok = {"bytelevel": pre_tokenizers.ByteLevel(add_prefix_space=False),
               "metaspace": pre_tokenizers.Metaspace(prepend_scheme="first"),
               "bert": pre_tokenizers.BertPreTokenizer()}[pre]
    norm = normalizers.BertNormalizer(lowercase=True) if family == "bert" else None
    words = set()
    for t in [*texts, *(" " + t for t in texts), prepare_context(list(texts))]:
        words.update(w for w, _ in pre_tok.pre_tokenize_str(norm.normalize_str(t) if norm else t))
    vocab = {w: i for i, w in enumerate(specials + sorted(words - set(specials)))}
    tok = Tokenizer(tm.WordLevel(vocab, unk_token=named["unk_token"]))
    tok.pre_tokenizer, tok.normalizer = pre_tok, norm
    if template:
        tok.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(s, vocab[s]) for s in specials if s in template])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_positions, **named)


def make_tiny_model(family: str, out_dir, texts: list[str], seed: int = 0, *, n_layers: int = 2,
                    width: int = 32, max_positions: int = 128) -> Path:
    """Write a random-weight model (n_layers blocks, hidden size width; T5: n_layers encoder and decoder
    blocks) and its tokenizer to out_dir -> out_dir as a Path."""
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny model family {family!r}: use {', '.join(FAMILIES)}")
    tok = tiny_tokenizer(family, texts, max_positions)
    heads = max(1, width // 16)
    extra = {"gpt2": dict(n_inner=2 * width, bos_token_id=0, eos_token_id=0),
             "llama": dict(bos_token_id=1, eos_token_id=2),
             "t5": dict(d_ff=2 * width, d_kv=width // heads, num_decoder_layers=n_layers, pad_token_id=0,
                        feed_forward_proj="gated-gelu", eos_token_id=1, decoder_start_token_id=0),
             "bert": dict(pad_token_id=0)}[family]
    config = transformers.AutoConfig.for_model(
        family, vocab_size=len(tok), hidden_size=width, num_hidden_layers=n_layers, num_attention_heads=heads,
        intermediate_size=2 * width, max_position_embeddings=max_positions, initializer_range=0.2, **extra)
    torch.manual_seed(seed)
    net = getattr(transformers, FAMILIES[family][4]).from_config(config)
    out_dir = Path(out_dir)
    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()
    try:
        net.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
    finally:
        transformers.utils.logging.set_verbosity(verbosity)
    return out_dir


if __name__ == "__main__":
    print(make_tiny_model(sys.argv[1], sys.argv[2], sys.argv[3:]))
