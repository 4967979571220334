"""Benchmark: models.extract's one forward pass per context group vs one per prefix (Brain-Score's way).

Times models.extract over the real Pereira2018 384 sentences (96 passages x 4 sentences) and the Blank2014
stories (8 stories, 1,317 TR fragments) with a small random-weight GPT-2-style model (4 blocks, width 256,
2048 positions) whose word-level tokenizer covers the texts. "Per prefix" gives extract every stimulus's
Brain-Score context as a group of its own, so each runs as its own sequence, batched or one at a time.
Prints seconds, tokens per second (tokens the forward passes process, padding excluded), the speed-up and
the max abs difference between the two ways. Each timing includes loading the model (when another was
held) and tokenizing, as a user sees it. Not a test (no test_ prefix). Needs ../shared/data/stimuli.

Measured (2-core shared CPU, one pass per group vs per prefix):
| dataset                                  | one pass per group | per prefix, batch 8 | batch 1 | max |diff| |
| Pereira2018 384 sentences (96 x 4)       | 0.43 s             | 2.2x slower         | 5.2x    | 7e-05      |
| Blank2014, 8 stories, 1,317 TR fragments | 2.49 s             | 35x slower          | -       | 1e-04      |
(batch 1: Brain-Score's way; the differences are float32 rounding.) This version, rerun on the same machine
under a load of 7: 3.20 s, 4.4x, 7.4x, 7.2e-05 (Pereira); 5.59 s, 66x, 1.7e-04 (Blank2014); 9.5 minutes.
For 4-sentence passages one pass processes at most 2.5x fewer tokens than a batched per-prefix run; that
ratio bounds the speed-up, which grows with the group's length. About 2 minutes, most of it the per-prefix
way on Blank2014 (--stories N times only the first N stories).
Leaves out: real weights and GPUs; the ratio is what matters.
Run: python tests/bench_models.py [--stories 8]
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import models  # noqa: E402
from tiny import make_tiny_model  # noqa: E402

STIMULI = ROOT.parent / "shared" / "data" / "stimuli"


def pereira():
    sentences = (STIMULI / "pereira2018_384sentences.txt").read_text().splitlines()
    return sentences, [f"passage{i // 4}" for i in range(len(sentences))]


def blank(n_stories=8):
    stories = json.loads((STIMULI / "blank2014_tr_fragments.json").read_text())
    names = list(stories)[:n_stories]
    return [t for s in names for t in stories[s]], [s for s in names for _ in stories[s]]


def per_prefix(texts, groups):
    """Every stimulus's Brain-Score context as a group of its own: one forward pass per prefix."""
    contexts, _ = models._contexts(texts, groups, 0)
    return contexts, [str(i) for i in range(len(contexts))]


def n_tokens(model_dir, texts, groups):
    """Tokens the forward passes process (sum of sequence lengths, padding excluded)."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.truncation_side = "left"
    return sum(len(ids) for ids, _ in models._plan(tok, "causal", *models._contexts(texts, groups, 0), 2048))


def timed(model_dir, texts, groups, repeat=1, **kw):
    """-> (activations, best wall-clock seconds over `repeat` runs)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        acts = models.extract(model_dir, texts, groups, progress=False, device="cpu", **kw)
        best = min(best, time.perf_counter() - t)
    return acts, best


def line(label, seconds, tokens):
    print(f"  {label:<28} {seconds:8.2f} s {tokens:>10,} tokens {tokens / seconds:>8,.0f} tok/s")


def compare(model_dir, name, texts, groups, batch_size, repeat, batch1=False):
    print(f"\n{name}: {len(texts)} stimuli in {len(set(groups))} groups")
    prefixes = per_prefix(texts, groups)
    one, t_one = timed(model_dir, texts, groups, repeat, batch_size=batch_size)
    per, t_per = timed(model_dir, *prefixes, repeat, batch_size=batch_size)
    tok_one, tok_per = n_tokens(model_dir, texts, groups), n_tokens(model_dir, *prefixes)
    line(f"one pass per group (batch {batch_size})", t_one, tok_one)
    line(f"one pass per prefix (batch {batch_size})", t_per, tok_per)
    print(f"  speed-up {t_per / t_one:.1f}x (tokens {tok_per / tok_one:.1f}x)   max |diff| "
          f"{np.abs(one - per).max():.1e} (max |activation| {np.abs(one).max():.0f})")
    if batch1:  # Brain-Score itself runs one prefix at a time
        per1, t_per1 = timed(model_dir, *prefixes, repeat, batch_size=1)
        line("one pass per prefix (batch 1)", t_per1, tok_per)
        print(f"  speed-up {t_per1 / t_one:.1f}x   max |diff| {np.abs(one - per1).max():.1e} (float noise: "
              f"per prefix batch 1 vs {batch_size} differ by {np.abs(per - per1).max():.1e})")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stories", type=int, default=8, help="Blank2014 stories to time (first N of 8)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args()
    if not STIMULI.exists():
        sys.exit(f"needs the stimulus texts in {STIMULI}")
    (p_texts, p_groups), (b_texts, b_groups) = pereira(), blank(args.stories)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(make_tiny_model("gpt2", tmp, p_texts + b_texts, n_layers=args.layers,
                                        width=args.width, max_positions=2048))
        print(f"random GPT-2-style model: {args.layers} blocks, width {args.width}, 2048 positions")
        timed(model_dir, p_texts[:8], p_groups[:8])  # warm-up
        compare(model_dir, "Pereira2018.384sentences (best of 3)", p_texts, p_groups, args.batch_size, 3,
                batch1=True)
        compare(model_dir, f"Blank2014 ({args.stories} stories)", b_texts, b_groups, args.batch_size, 1)


if __name__ == "__main__":
    main()
