"""Benchmark: models.surprisal batched vs one forward pass at a time (Brain-Score's way), same values.

Times models.surprisal over the real Futrell2018 words (the 10 Natural Stories, 10,256 words, one running
context) with a tiny random-weight GPT-2 (2 blocks, width 32, 128 positions) whose word-level tokenizer
covers the words. Every word's left-truncated window is one sequence (exactness allows no sharing once the
context overflows: each window starts one word later, positions from 0); batched, or one at a time (batch
1). Both use the linear-time tokenization; Brain-Score tokenizes every context whole, quadratic in the
text, which is timed on every --every-th context and reported apart. One torch thread (on a shared CPU,
more threads only contend). Prints seconds, the speed-up and the max abs difference. Not a test.

Measured (2-core shared CPU, one thread) with the earlier version, in which the words before the first
overflow also shared one pass (dropped since: one job per window):
- forward passes: 195 s for 10,138 sequences, batch 16 (the first 118 words shared one), against 219 s for
  10,256 passes, one per word, batch 1 (1.12x); values agree to 3e-6 bits, NaN in the same places.
- tokenization: 3.6 s, each word once (checked against whole contexts), against 46 s for every 20th context
  (513) tokenized whole, so about 15 minutes for all 10,256 (an estimate: 20x); identical ids.
From the first overflow on, brainalign does Brain-Score's arithmetic and gains only from batching: little on
one CPU thread, more on a GPU. The large saving is the tokenization. About 10 minutes on 2 CPU cores.
Needs ../shared/data/stimuli.
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
from tiny import make_tiny_model  # noqa: E402

WORDS = ROOT.parent / "shared" / "data" / "stimuli" / "futrell2018_words.tsv"


def timed(model_dir, words, **kw):
    """-> (surprisal, wall-clock seconds), the model already loaded (models._KEPT keeps it)."""
    models.surprisal(model_dir, words[:2], progress=False, device="cpu", **kw)
    t = time.perf_counter()
    bits = models.surprisal(model_dir, words, progress=False, device="cpu", **kw)
    return bits, time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--words", type=int, default=10256)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--every", type=int, default=20, help="tokenize every N-th context whole, for its cost")
    args = p.parse_args()
    torch.set_num_threads(1)
    words = [line.split("\t")[0] for line in WORDS.read_text().splitlines()[1:]][:args.words]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(make_tiny_model("gpt2", Path(tmp, "m"), words, max_positions=args.max_length))
        tok = AutoTokenizer.from_pretrained(model_dir)
        tok.truncation_side = "left"
        t = time.perf_counter()
        jobs = models._surprisal_jobs(models._word_inputs(tok, words, args.max_length, progress=False))
        linear = time.perf_counter() - t
        sample = range(0, len(words), args.every)
        t = time.perf_counter()
        list(models._tokenized_whole(tok, words, args.max_length, progress=False, which=sample))
        whole = time.perf_counter() - t
        batched, t_batched = timed(model_dir, words, batch_size=args.batch_size)
        per_word, t_per_word = timed(model_dir, words, batch_size=1)
    print(f"{len(words):,} words, max length {args.max_length}: {len(jobs):,} forward sequences, "
          f"{sum(len(ids) for ids, _ in jobs):,} tokens")
    print(f"  tokenization, word by word (all contexts)   {linear:8.2f} s")
    print(f"  tokenization, whole ({len(sample):,} contexts)        {whole:8.2f} s")
    print(f"  batched, batch {args.batch_size:<3}                    {t_batched:8.2f} s")
    ratio = t_per_word / t_batched
    print(f"  one pass per word, batch 1                  {t_per_word:8.2f} s  ({ratio:.2f}x)")
    same = bool((np.isnan(batched) == np.isnan(per_word)).all())
    print(f"  max abs diff {np.nanmax(np.abs(batched - per_word)):.1e} bits; NaN in the same places: {same}")


if __name__ == "__main__":
    main()
