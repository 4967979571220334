"""Benchmark: models.surprisal's chunked passes vs one forward pass per word (Brain-Score's way), same values.

Times models.surprisal over the real Futrell2018 words (the 10 Natural Stories, 10,256 words, one
running context) with a tiny random-weight GPT-2 (2 blocks, width 32, 128 positions) whose
word-level tokenizer covers the words. Chunked: the words before the context first overflows the
maximum length share one pass, then one left-truncated window per word (exactness allows no more
sharing: each window starts one word later, positions from 0), batched. Per word: the same windows,
one pass each (batch 1). Both use the linear-time tokenization; Brain-Score also tokenizes every
context whole, quadratic in the text, which is timed on every --every-th context and reported apart.
One torch thread (on a shared CPU, more threads only contend). Prints seconds, the speed-up and the
max abs difference. About 10 minutes on 2 CPU cores. Needs ../shared/data/stimuli. Not a test.
Run: python tests/bench_surprisal.py [--words 10256] [--max-length 128] [--batch-size 16] [--every 20]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import models  # noqa: E402

WORDS = ROOT.parent / "shared" / "data" / "stimuli" / "futrell2018_words.tsv"


def timed(model_dir, words, **kw):
    """-> (surprisal, wall-clock seconds), the model already loaded (models._LAST keeps it)."""
    models.surprisal(model_dir, words[:2], progress=False, device="cpu", **kw)
    t = time.perf_counter()
    bits = models.surprisal(model_dir, words, progress=False, device="cpu", **kw)
    return bits, time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--words", type=int, default=10256)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--every", type=int, default=20, help="tokenize every N-th context whole, for its cost")
    args = p.parse_args()
    torch.set_num_threads(1)
    words = [line.split("\t")[0] for line in WORDS.read_text().splitlines()[1:]][:args.words]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(models.make_tiny_model("gpt2", Path(tmp, "m"), words, max_positions=args.max_length))
        tok = AutoTokenizer.from_pretrained(model_dir)
        tok.truncation_side = "left"
        t = time.perf_counter()
        jobs = models._surprisal_jobs("causal", models._word_inputs(tok, words, args.max_length, progress=False))
        linear = time.perf_counter() - t
        sample = range(0, len(words), args.every)
        t = time.perf_counter()
        list(models._tokenized_whole(tok, words, args.max_length, progress=False, which=sample))
        whole = time.perf_counter() - t
        chunked, t_chunked = timed(model_dir, words, batch_size=args.batch_size)
        per_word, t_per_word = timed(model_dir, words, batch_size=1, one_pass=False)
    print(f"{len(words):,} words, max length {args.max_length}: {len(jobs):,} forward sequences "
          f"({len(jobs[0][1]):,} words share the first), {sum(len(ids) for ids, _ in jobs):,} tokens")
    print(f"  tokenization, word by word (all contexts)   {linear:8.2f} s")
    print(f"  tokenization, whole ({len(sample):,} contexts)        {whole:8.2f} s")
    print(f"  chunked, batch {args.batch_size:<3}                    {t_chunked:8.2f} s")
    print(f"  one pass per word, batch 1                  {t_per_word:8.2f} s  ({t_per_word / t_chunked:.2f}x)")
    same = bool((np.isnan(chunked) == np.isnan(per_word)).all())
    print(f"  max abs diff {np.nanmax(np.abs(chunked - per_word)):.1e} bits; NaN in the same places: {same}")


if __name__ == "__main__":
    main()
