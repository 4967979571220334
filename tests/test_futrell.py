"""Futrell2018 behavioural alignment: the loader on the real words, models.surprisal against a direct
transcription of Brain-Score's per-word computation (tiny GPT-2, LLaMA and T5 with a small maximum
length, so the context overflows it), the metric and ceiling against transcriptions of Brain-Score's
benchmark, bad inputs, the tables, and the paper's Table 9 through our comparison.
Run: python -m pytest -q tests/test_futrell.py
"""
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import brainalign as ba  # noqa: E402
import data  # noqa: E402
from test_data import write_assembly  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
import models  # noqa: E402
from tiny import make_tiny_model  # noqa: E402

WORDS_TSV = ROOT.parent / "shared" / "data" / "stimuli" / "futrell2018_words.tsv"
STORY = ("If you were to journey to the North of England, you would come to a valley. Tom's mother "
         "said: 'Never again!' and left. Mr. Bradford smiled. 'Why not?' he asked, and the wool was spun.").split()


# --------------------------------------------------------------------------- fixtures

def sentence_ids(words):
    """sentence_id and word_within_sentence_id as Brain-Score packaged them (brain-score/language
    1041be4 data/futrell2018/data_packaging.py): a sentence ends at a word ending in . ? ! .' ?' !' ;'
    unless the next word is lower-case or the word is "Mr."."""
    ends = (".", "?", "!", ".'", "?'", "!'", ";'")
    sentence, within, s, k = [], [], 1, 0
    for i, w in enumerate(words):
        k += 1
        sentence.append(s)
        within.append(k)
        if w.endswith(ends) and (i + 1 == len(words) or not (words[i + 1].islower() or w == "Mr.")):
            s, k = s + 1, 0
    return np.array(sentence), np.array(within)


def futrell_file(path, words, stories, n_subjects=6, seed=0, unread_story=None):
    """Brain-Score's Futrell2018 layout: `data` (presentation x subject) of reading times, NaN where a
    subject did not read a story (here all but two subjects skip one story), with its coordinates."""
    rng = np.random.default_rng(seed)
    stories = np.asarray(stories)
    sentence, within = sentence_ids(words)
    times = 300 + 40 * rng.standard_normal((len(words), n_subjects)) + 5 * np.array([len(w) for w in words])[:, None]
    names = list(dict.fromkeys(stories.tolist()))
    for j in range(n_subjects - 2):                        # the last two subjects read every story
        times[stories == names[j % len(names)], j] = np.nan
    if unread_story is not None:
        times[stories == unread_story] = np.nan
    pres = {"word": list(words), "word_core": [w.strip(".,'!?;:") for w in words], "story_id": stories,
            "word_id": np.arange(1, len(words) + 1), "word_within_sentence_id": within,
            "sentence_id": sentence, "stimulus_id": np.arange(1, len(words) + 1)}
    subj = {"subject_id": np.array([f"A{j:03d}" for j in range(n_subjects)]), "correct": np.full(n_subjects, 6)}
    write_assembly(path, times, pres, subj)
    with h5py.File(path, "a") as f:          # the second dimension is `subject` in this assembly
        f.move("neuroid", "subject")
    return Path(path), times


def real_words():
    if not WORDS_TSV.exists():
        pytest.skip("needs ../shared/data/stimuli/futrell2018_words.tsv")
    rows = [line.split("\t") for line in WORDS_TSV.read_text().splitlines()[1:]]
    return [r[0] for r in rows], np.array([int(r[2]) for r in rows])


def brainscore_reading_times(model_dir, words):
    """Brain-Score's per-word computation, transcribed (1041be4 model_helpers/huggingface.py:
    digest_text, _tokenize_overflow_aware, estimate_reading_times; T5 as PR #194 8ace8f3 runs it)."""
    F = torch.nn.functional
    config = transformers.AutoConfig.from_pretrained(model_dir)
    auto = transformers.AutoModelForSeq2SeqLM if config.is_encoder_decoder else transformers.AutoModelForCausalLM
    net = auto.from_pretrained(model_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    if not config.is_encoder_decoder:        # HuggingfaceSubject's own tokenizer; #194 passes T5's as is
        tok.truncation_side = "left"
    out, number_of_tokens = [], 0
    for part_number in range(len(words)):
        context = models.prepare_context(words[:part_number + 1])
        context_tokens = tok(context, truncation=True, return_tensors="pt")
        overflowing = context_tokens.encodings[0].overflowing
        num_overflowing = sum(len(o) for o in overflowing) if overflowing else 0
        current = context_tokens["input_ids"][..., number_of_tokens - num_overflowing:]
        number_of_tokens = context_tokens["input_ids"].shape[-1] + num_overflowing
        inputs = {"input_ids": context_tokens["input_ids"], "attention_mask": context_tokens["attention_mask"]}
        if config.is_encoder_decoder:
            inputs["decoder_input_ids"] = inputs["input_ids"]
        with torch.no_grad():
            logits = net(**inputs).logits.squeeze(dim=0)
        if logits.shape[0] <= 1:
            out.append(np.nan)
            continue
        predicted = logits[-current.shape[-1] - 1: -1, :]
        actual = current.squeeze(dim=0)
        if actual.shape[0] == predicted.shape[0] + 1:
            actual = actual[1:]
        out.append(float(F.cross_entropy(predicted, actual, reduction="sum") / np.log(2)))
    return np.array(out)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny random models with a 16-token maximum length: STORY overflows it after about 12 words."""
    folder = tmp_path_factory.mktemp("tiny")
    return {family: str(make_tiny_model(family, folder / family, STORY, max_positions=16))
            for family in ("gpt2", "llama", "t5", "bert")}


# --------------------------------------------------------------------------- data

def test_loader_on_the_real_words(tmp_path):
    words, stories = real_words()
    path, _ = futrell_file(tmp_path / "f.nc", words, stories, n_subjects=20)
    [rt] = data.load("Futrell2018", files=[path])
    assert len(rt.words) == 10256 and len(set(rt.sentences.tolist())) == 481   # as Brain-Score's test
    assert rt.words == words and len(set(rt.stories.tolist())) == 10
    assert [w for w, k in zip(STORY, sentence_ids(STORY)[1]) if k == 1][:3] == ["If", "Tom's", "Mr."]


# --------------------------------------------------------------------------- surprisal

@pytest.mark.parametrize("family", ["gpt2", "llama", "t5"])
def test_surprisal_equals_brainscore_per_word_across_truncation(tiny, family):
    tok = transformers.AutoTokenizer.from_pretrained(tiny[family])
    assert len(tok(models.prepare_context(STORY))["input_ids"]) > 2 * 16     # far past the maximum length
    reference = brainscore_reading_times(tiny[family], STORY)
    ours = models.surprisal(tiny[family], STORY, device="cpu", progress=False, batch_size=4)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference))
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)
    # GPT-2 (no BOS) has no prediction for the one-token first word; LLaMA's BOS and T5's </s> give one
    assert np.isnan(ours).sum() == (family == "gpt2")


def test_one_pass_per_distinct_window(tiny):
    tok = transformers.AutoTokenizer.from_pretrained(tiny["t5"])
    inputs = models._word_inputs(tok, STORY, 16, progress=False)
    jobs = models._surprisal_jobs(inputs)
    # T5 truncates on the right: once the context overflows, every later word has the same window
    assert len(jobs) < len(STORY) and sorted(w for _, reads in jobs for w, _ in reads) == \
        [w for w, (_, n) in enumerate(inputs) if n]


@pytest.mark.parametrize("family", ["gpt2", "llama", "t5"])
def test_word_by_word_tokenization_equals_whole_contexts(tiny, family):
    tok = transformers.AutoTokenizer.from_pretrained(tiny[family])
    tok.truncation_side = "right" if family == "t5" else "left"
    fast = models._tokenized_by_word(tok, STORY, 16)
    assert fast is not None and fast == list(models._tokenized_whole(tok, STORY, 16, progress=False))


def test_tokenizer_that_joins_words_falls_back_to_whole_contexts(tiny):
    tok = transformers.AutoTokenizer.from_pretrained(tiny["gpt2"])
    tokenizers = pytest.importorskip("tokenizers")
    tok.backend_tokenizer.normalizer = tokenizers.normalizers.Replace("you would", "you_would")
    assert models._tokenized_by_word(tok, STORY, 16) is None          # "would" alone is not "_would"
    whole = list(models._tokenized_whole(tok, STORY, 16, progress=False))
    assert [ids for ids, _ in models._word_inputs(tok, STORY, 16, progress=False)] == [ids for ids, _ in whole]


def test_surprisal_on_the_real_words(tmp_path):
    words = real_words()[0][:60]
    model = str(make_tiny_model("gpt2", tmp_path / "m", words, max_positions=32))
    ours = models.surprisal(model, words, device="cpu", progress=False)
    np.testing.assert_allclose(ours, brainscore_reading_times(model, words), rtol=1e-5, atol=1e-5)


def test_model_without_lm_head_is_refused(tiny, tmp_path):
    with pytest.raises(ValueError, match="no left-to-right language-model head"):
        models.surprisal(tiny["bert"], STORY, device="cpu", progress=False)
    headless = tmp_path / "headless"          # a LLaMA saved with AutoModel: its untied lm_head is gone
    transformers.AutoModel.from_pretrained(tiny["llama"]).save_pretrained(headless)
    transformers.AutoTokenizer.from_pretrained(tiny["llama"]).save_pretrained(headless)
    with pytest.raises(ValueError, match=r"lacks trained weights for lm_head\.weight"):
        models.surprisal(str(headless), STORY, device="cpu", progress=False)


def test_word_that_tokenizes_to_nothing_is_an_error(tiny):
    tok = transformers.AutoTokenizer.from_pretrained(tiny["gpt2"])
    tokenizers = pytest.importorskip("tokenizers")
    tok.backend_tokenizer.normalizer = tokenizers.normalizers.Replace(" ~", "")   # deletes the word "~"
    with pytest.raises(ValueError, match=r"word 3 \('~'\) adds no tokens"):
        models._word_inputs(tok, STORY[:3] + ["~"] + STORY[3:8], 16, progress=False)


@pytest.mark.parametrize("words, match", [([], "words is empty"), (["a", ""], "word 1 is ''"),
                                          (["a", " b"], "surrounding whitespace")])
def test_bad_words(tiny, words, match):
    with pytest.raises(ValueError, match=match):
        models.surprisal(tiny["gpt2"], words, device="cpu", progress=False)


# --------------------------------------------------------------------------- metric and ceiling

def readings(n_words=200, n_subjects=12, seed=1):
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal(n_words)
    times = 300 + 30 * signal[:, None] + 40 * rng.standard_normal((n_words, n_subjects))
    times[:50, :3] = np.nan                                         # 3 subjects skipped the first story
    within = np.tile(np.arange(1, 11), n_words // 10)
    return signal, times, within


def test_reading_time_r_is_pearson_with_the_mean_reader_without_first_words():
    signal, times, within = readings()
    surprisal = signal + np.random.default_rng(2).standard_normal(len(signal))
    surprisal[within == 1] = np.nan                                 # allowed: first words are left out
    keep = within != 1
    expected = scipy.stats.pearsonr(surprisal[keep], np.nanmean(times[keep], axis=1))[0]
    assert ba.reading_time_r(surprisal, times, within) == pytest.approx(expected, abs=1e-12)
    assert ba.reading_time_r(-surprisal, times, within) == pytest.approx(-expected, abs=1e-12)


def brainscore_split_halves(times, subject_ids):
    """benchmarks/futrell2018/benchmark.py SplitHalvesConsistency (brain-score/language 1041be4), transcribed
    (xarray's mean skips NaN) -> the Spearman-Brown corrected consistency of each of the 10 splits."""
    random_state, corrected = np.random.RandomState(0), []
    for _ in range(10):
        half1_values = random_state.choice(subject_ids, size=len(subject_ids) // 2, replace=False)
        half2_values = set(subject_ids) - set(half1_values)
        half1 = np.nanmean(times[:, [v in half1_values for v in subject_ids]], axis=1)
        half2 = np.nanmean(times[:, [v in half2_values for v in subject_ids]], axis=1)
        c = abs(scipy.stats.pearsonr(half1, half2)[0])
        corrected.append(2 * c / (1 + c))
    return corrected


def test_mean_reader_as_prediction_scores_one():
    # Brain-Score's test_exact: the mean over subjects as the model's output scores 1 after the ceiling
    signal, times, within = readings()
    rt = data.ReadingTimes("Futrell2018", ["w"] * len(signal), np.zeros(len(signal)), np.zeros(len(signal)),
                           within, times, np.array([f"s{j}" for j in range(times.shape[1])]))
    out = ba.behaviour_score(np.nanmean(times, axis=1), rt)
    assert out["score"] == pytest.approx(1.0) and 0.8 < out["ceiling"] < 0.9             # measured .858
    assert out["n_words"] == 180
    flipped = ba.behaviour_score(-np.nanmean(times, axis=1), rt)        # the score is |r|, the sign kept apart
    assert flipped["score"] == pytest.approx(1.0) and flipped["r"] == pytest.approx(-1.0)


def test_a_flipped_sign_normalises_to_its_size_over_the_ceiling():
    # a model whose surprisal falls where reading slows: r < 0, the score |r|; --brainscore divides it
    # by the data's split-half ceiling, below 1 here so no clipping hides a wrong value
    signal, times, within = readings()
    rt = data.ReadingTimes("Futrell2018", ["w"] * len(signal), np.zeros(len(signal)), np.zeros(len(signal)),
                           within, times, np.array([f"s{j}" for j in range(times.shape[1])]))
    surprisal = -signal - 2.0 * np.random.default_rng(5).standard_normal(len(signal))
    keep = within != 1
    r = scipy.stats.pearsonr(surprisal[keep], np.nanmean(times[keep], axis=1))[0]
    ceiling = np.median(brainscore_split_halves(times, rt.subjects))
    out = ba.behaviour_score(surprisal, rt)
    assert out["r"] == pytest.approx(r, abs=1e-12) and out["score"] == pytest.approx(-r, abs=1e-12)
    assert out["ceiling"] == pytest.approx(ceiling, abs=1e-12)
    record = {"model": "m", "dataset": "Futrell2018", "kind": "behaviour", "parts": {}, **out}
    normalised = ba.collect([record], ba.Settings(brainscore=True))[0]["m"]["Futrell2018"]
    assert normalised == pytest.approx(-r / ceiling, abs=1e-12) and normalised < 0.9   # measured r -.350, .408
    assert ba.collect([record], ba.Settings())[0]["m"]["Futrell2018"] == pytest.approx(-r, abs=1e-12)


def test_split_half_ceiling_equals_brainscore():
    # 13 subjects: with an even number the first half's size, len // 2, could as well be rounded up
    signal, times, _ = readings(n_subjects=13)
    subject_ids = np.array([f"A{j:03d}" for j in range(times.shape[1])])
    corrected = brainscore_split_halves(times, subject_ids)
    ceiling, splits, uncorrected = ba.split_half_ceiling(times)
    np.testing.assert_allclose(splits, corrected, atol=1e-12)
    assert ceiling == pytest.approx(np.median(corrected), abs=1e-12) and (uncorrected < splits).all()
    # two readers who disagree: each half is one of them, and the consistency is |r| (abs above)
    x = np.random.default_rng(3).standard_normal((50, 2))
    opposed = np.c_[x[:, 0], -x[:, 0] + 0.5 * x[:, 1]]
    c = abs(scipy.stats.pearsonr(opposed[:, 0], opposed[:, 1])[0])
    ceiling, splits, uncorrected = ba.split_half_ceiling(opposed)
    np.testing.assert_allclose(uncorrected, [c] * 10, atol=1e-12)
    assert ceiling == pytest.approx(2 * c / (1 + c), abs=1e-12)


def test_metric_bad_inputs():
    signal, times, within = readings()
    missing = signal.copy()
    missing[5] = np.nan                                             # word 5 is not first in its sentence
    with pytest.raises(ValueError, match=r"1 scored words \(the first is word 5\) have no surprisal"):
        ba.reading_time_r(missing, times, within)
    unread = times.copy()
    unread[20:30] = np.nan                                          # a story nobody read
    with pytest.raises(ValueError, match=r"9 scored words \(the first is word 21\) have no reading time"):
        ba.reading_time_r(signal, unread, within)
    with pytest.raises(ValueError, match="must both be"):
        ba.reading_time_r(signal[:-1], times, within)
    with pytest.raises(ValueError, match="at least 2 subjects"):
        ba.split_half_ceiling(times[:, :1])


# --------------------------------------------------------------------------- tables and CLI

PAIRS = [(m, i.base) for m, i in models.MODELS.items() if i.base and i.in_paper]


def test_paper_table9_through_our_comparison_gives_no_gain():
    table9 = {m: {"Futrell2018": i.futrell, "Average": i.futrell} for m, i in models.MODELS.items() if i.futrell}
    assert len(table9) == 25
    out = ba.compare_pairs(table9, PAIRS, ("Futrell2018", "Average"), headline=("Futrell2018",))
    # the paper: instruction tuning does not improve behavioural alignment
    assert out["n_pairs"] == 17 and out["headline"] == pytest.approx(-11.76, abs=0.01)
    assert out["improved"] == 9                                      # 7 worse, vicuna-13b ties llama-13b
    assert sum(r["Futrell2018"] < 0 for r in out["rows"]) == 7
    assert out["wilcoxon_p"] > 0.05                                  # measured 0.393: no significant change
    rows = {r["tuned"]: r["Futrell2018"] for r in out["rows"]}
    assert rows["flan-t5-small"] == pytest.approx(100 * (.054 - .229) / .229)


def test_behaviour_stays_out_of_the_brain_average_and_the_headline():
    brain = [{"model": m, "dataset": d, "kind": "brain", "best_layer": 1, "layer_names": ["embeddings", "block.0"],
              "parts": {d: {"layers": [0.0, s]}}}
             for m, s in (("t5-small", 0.1), ("flan-t5-small", 0.2)) for d in ba.PAPER_DATASETS]
    behaviour = [{"model": m, "dataset": "Futrell2018", "kind": "behaviour", "score": s, "ceiling": 0.8, "parts": {}}
                 for m, s in (("t5-small", 0.3), ("flan-t5-small", 0.25), ("llama-7b", 0.2))]
    scores, layers = ba.collect(brain + behaviour, ba.Settings())
    info = {m: models.MODELS[m] for m in ("t5-small", "flan-t5-small", "llama-7b")}
    out = ba.tables(scores, layers, info, ba.Settings())
    rows = {r["model"]: r for r in next(iter(out.values()))}
    assert rows["t5-small"]["Average"] == pytest.approx(0.1)
    assert rows["t5-small"]["Futrell2018"] == 0.3 and rows["t5-small"]["Futrell2018 paper"] == 0.229
    assert rows["llama-7b"]["Futrell2018"] == 0.2 and rows["llama-7b"]["Average"] is None
    comparison = out["Instruction tuning: tuned vs vanilla (relative change)"]
    assert comparison[0]["Futrell2018"] == "-16.7%" and comparison[0]["Average"] == "+100.0%"
    assert comparison[1]["note"].startswith("headline +100.00%")       # the brain datasets only
    assert comparison[2]["tuned"] == "mean of 1 pairs (the paper)" and comparison[2]["Futrell2018"] == "-76.4%"
    assert list(out)[-1].startswith("Correlation") and len(out) == 3
    normalised = ba.collect(brain + behaviour, ba.Settings(brainscore=True))[0]
    assert normalised["t5-small"]["Futrell2018"] == pytest.approx(0.3 / 0.8)


def test_all_includes_futrell2018_and_it_is_a_choice():
    assert ba.parse_args(["--all"])[1] == list(ba.PAPER_DATASETS) + ["Futrell2018"]
    assert ba.parse_args([])[1] == list(ba.PAPER_DATASETS)
    assert ba.parse_args(["--datasets", "Futrell2018"])[1] == ["Futrell2018"]


def test_cli_scores_futrell2018_end_to_end(tiny, tmp_path, capsys):
    path, times = futrell_file(tmp_path / "f.nc", STORY, [1] * 20 + [2] * (len(STORY) - 20))
    argv = ["--models", tiny["gpt2"], "--datasets", "Futrell2018", "--device", "cpu", "--data-file",
            f"Futrell2018={path}", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    out = ba.main(argv)
    bits = brainscore_reading_times(tiny["gpt2"], STORY)          # Brain-Score's computation, transcribed
    keep = sentence_ids(STORY)[1] != 1
    expected = abs(scipy.stats.pearsonr(bits[keep], np.nanmean(times[keep], axis=1))[0])
    [row] = next(iter(out.values()))
    # measured 7e-9 apart: the transcription runs word by word, ours a pass per distinct window, and
    # float32 logits round differently
    assert row["Futrell2018"] == pytest.approx(expected, abs=1e-6) and "Average" not in row
    (record,) = (tmp_path / "cache" / "scores").rglob("*.json")
    first = record.read_text()
    assert ba.main(argv) == out and record.read_text() == first
