"""The whole pipeline offline, in seconds: three pairs of tiny random-weight GPT-2s (width 16, 32,
64: "demo-<width>" and "demo-<width>-tuned") scored on Pereira2018-, Blank2014- and Wehbe2014-shaped
synthetic datasets whose responses are planted from layer 1 of the three tuned models, so each tuned
model must align better than its vanilla twin. The tables and figures say SYNTHETIC; the numbers
mean nothing about real models. Everything goes through brainalign.run, as `--all` does.

    python tests/demo.py                       # report in results-demo/, cache in ~/.cache/brainalign/demo
    python tests/demo.py --out DIR --cache-dir DIR
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import brainalign as ba  # noqa: E402
import data  # noqa: E402
import models  # noqa: E402
from tiny import make_tiny_model  # noqa: E402


def demo_sentences(seed=0):
    """400 synthetic sentences for Pereira-like passages, Blank-like stories and a word stream."""
    rng = np.random.default_rng(seed)
    nouns = ("dog cat bird child farmer teacher river house garden letter boat song horse window "
             "doctor baker sailor forest bridge candle mountain village lamp basket painter singer "
             "island castle wagon kettle mirror ladder violin pocket lantern meadow harbor tower "
             "blanket pebble").split()
    verbs = "sees finds follows paints carries hears builds remembers watches opens".split()
    adjs = "small old bright quiet green tired happy strange".split()
    return [f"The {rng.choice(adjs)} {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(nouns)}"
            for _ in range(400)]         # no final period: the last token (what is read) must vary


def _unit(a):
    return (a - a.mean(0)) / (a.std(0) + 1e-12)


def synthetic(stimulus_features, word_features, sentences, seed=0, noise=1.0):
    """{dataset: [data.Dataset]}: Pereira-, Blank- and Wehbe-shaped data (the same fields, splits
    and context rules as the real ones, far smaller) whose responses are a noisy linear map of
    stimulus_features(texts, groups) or, for the time series, of word_features(words, window)."""
    rng = np.random.default_rng(seed)

    def planted(x, n_subjects, per_subject):
        y = _unit(_unit(x) @ rng.normal(size=(x.shape[1], n_subjects * per_subject)))
        y = y + noise * rng.normal(size=y.shape)
        return y.astype(np.float32), np.repeat([f"subj{k}" for k in range(n_subjects)], per_subject)

    out = {}
    for name, texts, size, n_subj in (("Pereira2018", sentences[:96], 4, 3),
                                      ("Blank2014", sentences[96:216], 10, 2)):
        groups = [f"{name}.{i // size}" for i in range(len(texts))]
        y, subj = planted(stimulus_features(texts, groups), n_subj, 20)
        ids = np.array([f"{name}.{i}" for i in range(len(texts))])
        out[name] = [data.Dataset(name, texts, groups, y, subj, stimulus_ids=ids)]
    words = " ".join(sentences[216:316]).split()[:480]        # 2 words per TR, 2 runs of TRs
    word_tr = np.arange(len(words)) // 2 + 4
    n_tr = int(word_tr[-1]) + 5
    sample_tr = np.r_[8:120, 128:n_tr - 3]
    feats = word_features(words, 8)
    per_tr = np.zeros((n_tr, feats.shape[1]))
    np.add.at(per_tr, word_tr, feats)
    y, subj = planted(np.roll(per_tr, 2, axis=0)[sample_tr], 2, 30)     # a 2-TR response delay
    out["Wehbe2014"] = [data.Dataset("Wehbe2014", words, ["chapter"] * len(words), y, subj, word_tr=word_tr,
                                     sample_tr=sample_tr, n_tr=n_tr, first_word=4, n_folds=4, gap=2, window=8)]
    return out


def demo_models(folder, sentences):
    """Three pairs of tiny GPT-2s written once into folder (reused later) -> [models.ModelInfo]."""
    infos = []
    for width in (16, 32, 64):
        params = 2 * 12 * width ** 2 + (150 + 128) * width        # blocks, token and position tables
        for name, base in ((f"demo-{width}", None), (f"demo-{width}-tuned", f"demo-{width}")):
            path = Path(folder, name)
            if not (path / "model.safetensors").exists():        # (written last by save_pretrained)
                make_tiny_model("gpt2", path, sentences, seed=len(infos), width=width)
            infos.append(models.ModelInfo(name, str(path.resolve()), "gpt2", float(params), 2, base))
    return infos


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results-demo")
    p.add_argument("--cache-dir", default=str(Path("~/.cache/brainalign/demo").expanduser()))
    args = p.parse_args(argv)
    sentences = demo_sentences()
    infos = demo_models(Path(args.cache_dir, "models"), sentences)
    tuned = [i.hub_id for i in infos if i.base]

    def stimulus_features(texts, groups):            # (n_stimuli, 3 * width): layer 1 of the tuned models
        return np.concatenate([models.extract(m, texts, groups, progress=False)[:, 1] for m in tuned], axis=1)

    def word_features(words, window):
        return np.concatenate([models.extract_words(m, words, window=window, progress=False)[:, 1]
                               for m in tuned], axis=1)

    loaded = synthetic(stimulus_features, word_features, sentences)
    settings = ba.Settings(device="cpu", cache_dir=str(Path(args.cache_dir).resolve()))
    return ba.run(infos, list(loaded), settings, args.out, loaded=loaded)


if __name__ == "__main__":
    main()
