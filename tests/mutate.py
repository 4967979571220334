"""Mutation testing: plant realistic one-line bugs, one at a time, in a copy of the project, and check
that the tests catch each of them. A script, not a test (pytest does not collect it); stdlib only.

    python tests/mutate.py               # every mutant: prints each result and the kill rate
    python tests/mutate.py --list        # the mutants and the scientific choice each one breaks
    python tests/mutate.py --only ID ... # some mutants

Each mutant replaces one exact snippet of one file and runs the tests that guard that choice
(`pytest -x -q`). KILLED: the tests fail, as they must. SURVIVED: they pass, so the bug would go
unnoticed: add a test. STALE: the snippet is no longer in the file (or not exactly once), so the code
changed under the mutant: update it. The clean copy is tested first, so a test that fails anyway
cannot pass for a kill. Mutants that cannot change any result are listed in EQUIVALENT with the reason
and are not run.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORED = (".git", ".ci-venv", ".venv", "__pycache__", ".pytest_cache", "results")


@dataclass(frozen=True)
class Mutant:
    id: str            # area-number, e.g. "agg-1"
    file: str          # path relative to the repository root
    original: str      # exact snippet; must occur exactly once
    replacement: str
    tests: tuple       # pytest arguments: files or node ids
    breaks: str        # the scientific choice the bug breaks


AGG, REPORT = "tests/test_aggregation.py", "tests/test_report.py"
ENC = "tests/test_encoder.py"
SERIES, DATA, MODELS = "tests/test_timeseries.py", "tests/test_data.py", "tests/test_models.py"
MODELS_FAST = (f"{MODELS}::test_prepare_context_is_brain_scores",
               f"{MODELS}::test_matches_a_plain_forward_pass_of_the_context",
               f"{MODELS}::test_one_pass_equals_per_prefix")
CACHE = (f"{MODELS}::test_cache_hit_returns_the_same_arrays_without_loading",
         f"{MODELS}::test_cache_is_recomputed_when_only_the_groups_or_one_text_change")
RECORDS, WEHBE, FUTRELL = "tests/test_records.py", "tests/test_wehbe.py", "tests/test_futrell.py"
CHOOSE = (f"{RECORDS}::test_pereira_layer_is_chosen_on_the_mean_of_its_experiments",
          f"{AGG}::test_a_datasets_parts_are_averaged_layer_by_layer_then_one_layer_kept")
WEHBE_AGG = f"{WEHBE}::test_summarize_time_series_by_hand"
RIDGE = (f"{WEHBE}::test_inner_folds_are_sklearn_kfold", f"{WEHBE}::test_ridge_cv_equals_toneva_transcription")
KEY = 'key = key_of({"source": source, "texts": texts, "groups": groups, "window": context_window})'
KEYED = (f"{MODELS}::test_cache_is_keyed_by_dtype_readout_and_token_types",)
# summarize's MAD (summarize_time_series has the same line after `per_target=r,`)
MAD = ("per_target=r.mean(axis=0),\n                 per_subject=per_subject, "
       "mad=float(np.median(np.abs(subj - np.median(subj))))")

MUTANTS = [
    # --- aggregation: Brain-Score's median over targets, mean over splits; per part, then averaged
    Mutant("agg-1", "brainalign.py", "per_split = center(r, axis=1)", "per_split = np.mean(r, axis=1)",
           (AGG,), "median r over targets in each split (Brain-Score), not the mean"),
    Mutant("agg-2", "brainalign.py", "Score(score=float(per_split.mean())",
           "Score(score=float(np.median(per_split))", (AGG,), "mean over splits, not the median"),
    Mutant("agg-3", "brainalign.py", "float(center(r[:, subjects == s], axis=1).mean())",
           "float(r[:, subjects == s].mean(axis=1).mean())", (AGG,),
           "per-subject score: median over the subject's targets"),
    Mutant("agg-4", "brainalign.py", MAD, MAD.replace("mad=float(np.median(", "mad=float(np.mean("), (AGG,),
           "error bar = median absolute deviation, not the mean absolute deviation"),
    Mutant("agg-5", "brainalign.py", MAD, MAD.replace("subj - np.median(subj)", "subj - subj.mean()"), (AGG,),
           "MAD is taken around the median of the subjects, not their mean"),
    Mutant("agg-6", "brainalign.py",
           "return summarize(cross_validate(features, responses, splits, cond, numerics), subjects)",
           "return summarize(cross_validate(features, responses, splits, cond, numerics), subjects, np.mean)",
           (f"{AGG}::test_score_aggregates_cross_validated_r_with_the_median",),
           "score() aggregates with Brain-Score's median"),
    Mutant("agg-7", "brainalign.py", "per_subject = {str(s): float(r[subjects == s].mean())",
           "per_subject = {str(s): float(np.median(r[subjects == s]))",
           (f"{AGG}::test_time_series_parts_average_voxels_per_subject_then_subjects", WEHBE_AGG),
           "time series (Wehbe2014): mean r over a subject's voxels, as Aw & Toneva's scripts report"),
    Mutant("agg-8", "brainalign.py", 'mean = np.mean([p["layers"] for p in parts.values()], axis=0)',
           'mean = np.asarray(list(parts.values())[-1]["layers"])', CHOOSE,
           "a dataset's parts (Pereira's two experiments) are averaged layer by layer, not the last one kept"),
    Mutant("agg-9", "brainalign.py", "best = int(np.argmax(scores))", "best = len(scores) - 1",
           (f"{ENC}::test_score_layers_keeps_the_best_layer",), "the best layer per dataset, not the last layer"),
    # --- splits: Brain-Score's ShuffleSplit(10, train 0.9, seed 1); contiguous folds with gaps
    Mutant("split-1", "brainalign.py", "train_size=0.9, seed=1):", "train_size=0.9, seed=0):",
           (f"{ENC}::test_shuffle_splits_equal_sklearn_when_available",), "split seed 1 (Brain-Score)"),
    Mutant("split-2", "brainalign.py", "n_train = int(np.floor(train_size * n))",
           "n_train = int(np.ceil(train_size * n))",
           (f"{ENC}::test_shuffle_splits_equal_sklearn_when_available",),
           "train size rounded down (sklearn), test size up"),
    Mutant("split-3", "brainalign.py", "splits.append((perm[n_test:n_test + n_train], perm[:n_test]))",
           "splits.append((perm[:n_train], perm[n_train:]))",
           (f"{ENC}::test_shuffle_splits_equal_sklearn_when_available",),
           "the test set is the permutation's head"),
    Mutant("split-4", "brainalign.py", "        perm = rng.permutation(n)\n",
           "        perm = np.random.RandomState(seed).permutation(n)\n",
           (f"{ENC}::test_shuffle_splits_equal_sklearn_when_available",),
           "one generator draws a fresh permutation per split (not the same split 10 times)"),
    Mutant("split-5", "brainalign.py", "            test = test[gap:-gap]", "            test = test[gap:]",
           (f"{ENC}::test_kfold_contiguous_with_gap_follows_toneva_wehbe",),
           "a middle test block gives up `gap` samples at both ends"),
    Mutant("split-6", "brainalign.py", "edges = [k * (n // n_folds) for k in range(n_folds)] + [n]",
           "edges = [k * -(-n // n_folds) for k in range(n_folds)] + [n]",
           (f"{ENC}::test_kfold_contiguous_with_gap_follows_toneva_wehbe",),
           "fold size floor(n / n_folds), the last fold takes the rest"),
    Mutant("split-7", "brainalign.py", "kfold_splits(n, ds.n_folds, ds.gap)", "kfold_splits(n, ds.n_folds)",
           (SERIES, AGG), "Wehbe2014's 5-TR gap reaches the fold builder"),
    # --- least-squares cutoff (relative to the largest singular value)
    Mutant("cut-1", "brainalign.py",
           "    k = w > cond ** 2 * w[-1]\n    return ((b @ v[:, k])",
           "    k = w > cond * w[-1]\n    return ((b @ v[:, k])",
           (f"{ENC}::test_ill_conditioned_designs_equal_lstsq_at_the_cutoff",),
           "the cutoff is on singular values; eigenvalues of the Gram matrix need cond ** 2"),
    Mutant("cut-2", "brainalign.py", "        k = s > cond * s[0]\n        uy = ",
           "        k = s > cond ** 2 * s[0]\n        uy = ", (ENC,),
           "weights path: singular values at or below cond x the largest are dropped"),
    # --- time series: PCA fit rows, word -> TR averaging, delays, z-scoring within runs
    Mutant("series-1", "brainalign.py", "fit = np.isin(tr_of, ds.sample_tr[train])",
           "fit = np.isin(tr_of, ds.sample_tr)", (SERIES,),
           "PCA fitted on the training TRs' words only (no test leak)"),
    Mutant("series-2", "brainalign.py", "words = np.arange(ds.first_word, len(ds.texts))",
           "words = np.arange(len(ds.texts))", (SERIES,),
           "the first 20 words (no full context) get no features"),
    Mutant("series-3", "brainalign.py",
           "    per_tr /= np.maximum(np.bincount(tr_of, minlength=ds.n_tr), 1)[:, None]\n", "", (SERIES,),
           "a TR's feature is the mean of its words, not the sum"),
    Mutant("series-4", "brainalign.py",
           "delayed[d:, j * z.shape[1]:(j + 1) * z.shape[1]] = per_tr[:-d]",
           "delayed[:-d, j * z.shape[1]:(j + 1) * z.shape[1]] = per_tr[d:]", (SERIES,),
           "delays look back (TRs t-1..t-4), never forward"),
    Mutant("series-5", "brainalign.py", "kept[run == r] = zscore(kept[run == r])",
           "kept[run == r] = kept[run == r]", (SERIES,), "features z-scored within each run"),
    Mutant("series-6", "brainalign.py",
           "run = np.cumsum(np.diff(ds.sample_tr, prepend=ds.sample_tr[0]) != 1)",
           "run = np.zeros(len(ds.sample_tr), dtype=int)", (SERIES,),
           "runs are the blocks of consecutive kept TRs (z-scored separately)"),
    # --- data loading
    Mutant("data-1", "data.py", 'np.searchsorted(onsets, starts, side="left") - 1',
           'np.searchsorted(onsets, starts, side="right") - 1', (DATA,),
           "a word belongs to the last TR starting strictly before it (Toneva & Wehbe)"),
    Mutant("data-2", "data.py", "_zscore(_detrend(data[rows])[WEHBE_TRIM[0]:-WEHBE_TRIM[1]])",
           "_zscore(_detrend(data[rows])[WEHBE_TRIM[1]:-WEHBE_TRIM[0]])", (DATA,),
           "each run keeps TRs [20:-15]"),
    Mutant("data-3", "data.py",
           "block = np.concatenate([_zscore(_detrend(data[rows])[WEHBE_TRIM[0]:-WEHBE_TRIM[1]])\n"
           "                                for rows in run_rows])",
           "block = _zscore(np.concatenate([_detrend(data[rows])[WEHBE_TRIM[0]:-WEHBE_TRIM[1]]\n"
           "                                for rows in run_rows]))", (DATA,),
           "voxels z-scored within each run, not over the whole session"),
    Mutant("data-4", "data.py", "cols = np.flatnonzero(~np.isnan(asm.data[rows]).any(axis=0))",
           "cols = np.flatnonzero(~np.isnan(asm.data[rows]).all(axis=0))", (DATA,),
           "Pereira2018: a neuroid with any NaN in the experiment is dropped"),
    Mutant("data-5", "data.py", "order[where] = where[np.lexsort([key[where] for key in reversed(keys)])]",
           "order[where] = where[np.lexsort([key[where] for key in keys])]", (DATA,),
           "presentation order: sentence number first, then part number"),
    # --- context preparation and extraction
    Mutant("ctx-1", "models.py", '" ".join(p for p in parts if p.strip())',
           '"".join(p for p in parts if p.strip())',
           MODELS_FAST[:1], "context texts joined by single spaces (Brain-Score)"),
    Mutant("ctx-2", "models.py", r'r"\s+([.,!?;:])"', r'r"\s+([.,!?])"', MODELS_FAST[:1],
           "no space before any of .,!?;:"),
    Mutant("ctx-3", "models.py", "start = max(0, pos - window + 1) if window else 0",
           "start = max(0, pos - window) if window else 0", MODELS_FAST[:1],
           "a window of k texts includes the stimulus itself"),
    Mutant("ctx-4", "models.py", "jobs += [(x, [(i, len(x) - 1)]) for i, x in zip(alone, ids)]",
           "jobs += [(x, [(i, 0)]) for i, x in zip(alone, ids)]", MODELS_FAST[1:2],
           "the representation is the last token"),
    Mutant("ctx-5", "models.py", "reads += [(i, len(x) - 1) for i, x in zip(chain[s:s + 256], ids)",
           "reads += [(i, len(x) - 2) for i, x in zip(chain[s:s + 256], ids)", MODELS_FAST[2:],
           "one pass per group reads each stimulus at its own last token"),
    Mutant("ctx-6", "models.py", 'tok.truncation_side = "left"\n    return tok, model.eval(), config',
           'tok.truncation_side = "right"\n    return tok, model.eval(), config',
           (f"{MODELS}::test_truncation_keeps_the_last_tokens",),
           "a context longer than the model is cut on the left (the stimulus is kept)"),
    Mutant("cache-1", "models.py", KEY, KEY.replace(' "groups": groups,', ""),
           CACHE, "the activation cache key includes the context groups"),
    Mutant("cache-2", "models.py", KEY, KEY.replace(', "window": context_window', ""),
           CACHE, "the activation cache key includes the context window"),
    Mutant("cache-3", "models.py", KEY, KEY.replace('"texts": texts', '"texts": len(texts)'), CACHE,
           "the activation cache key includes the texts themselves"),
    # --- the paper's tables
    Mutant("table-1", "brainalign.py", "100.0 * (tuned - vanilla) / np.where(ok, vanilla, 1.0)",
           "100.0 * (tuned - vanilla) / np.where(ok, tuned, 1.0)",
           (f"{REPORT}::test_relative_change_and_means_by_hand",), "relative change over the vanilla base"),
    Mutant("table-2", "brainalign.py", '"headline": float(np.mean(per_dataset))',
           '"headline": float(mean.get("Average", np.nan))', (REPORT,),
           "headline = mean of the per-dataset mean gains (the paper's 6.2%)"),
    Mutant("table-3", "brainalign.py", 'row["p_fdr"] = float(q)', 'row["p_fdr"] = row["p"]', (REPORT,),
           "correlation p-values are FDR-corrected"),
    Mutant("table-4", "brainalign.py", "out[order] = np.minimum(adjusted, 1.0)",
           "out = np.minimum(adjusted, 1.0)[order]", (REPORT,), "BH values go back to their own tests"),
    Mutant("table-5", "brainalign.py", "np.minimum.accumulate(ranked[::-1])[::-1]",
           "np.minimum.accumulate(ranked)", (REPORT,), "BH step-up: running minimum from the largest p"),
    Mutant("table-6", "brainalign.py", "np.quantile(means, [(1 - level) / 2, (1 + level) / 2])",
           "np.quantile(means, [1 - level, level])", (REPORT,), "a two-sided 95% percentile interval"),
    Mutant("table-7", "brainalign.py", "n_boot=10000, seed=0,", "n_boot=10000, seed=None,", (REPORT,),
           "the bootstrap is seeded (seed 0): the table is reproducible"),
    Mutant("table-8", "brainalign.py", '"improved": sum(change > 0 for', '"improved": sum(change >= 0 for',
           (f"{REPORT}::test_a_tie_is_not_an_improvement",), "a tie is not an improvement"),
    Mutant("table-9", "brainalign.py", 'avg]).T\n        out["wilcoxon_p"] = float(scipy.stats.wilcoxon(t, v).pvalue)',
           'avg]).T\n        out["wilcoxon_p"] = float(scipy.stats.wilcoxon(t, v, alternative="greater").pvalue)',
           (REPORT,),
           "two-sided Wilcoxon signed-rank test"),
    Mutant("table-10", "brainalign.py", '"log10(params), tuned": ([m for m in have if m in tuned]',
           '"log10(params), tuned": (have', (REPORT,), "size correlation over the tuned models"),
    Mutant("table-11", "brainalign.py", 'out["ci95"] = bootstrap_ci(relative_change(t, v))',
           'out["ci95"] = bootstrap_ci(100.0 * (t - v))', (REPORT,),
           "the interval is for the mean relative change, in %"),
    Mutant("table-12", "brainalign.py",
           "averaged = [d for d in PAPER_DATASETS if d in ceilings] or sorted(ceilings)",
           "averaged = sorted(ceilings)", (REPORT,), "Average over the paper's datasets only"),
    # --- ceiling normalisation
    Mutant("ceil-1", "brainalign.py", 'float(np.mean([normalize(p["layers"][best], p["ceiling"]) for p in parts]))',
           'normalize(float(np.mean([p["layers"][best] for p in parts])), rec["ceiling"])',
           (f"{REPORT}::test_normalisation_is_per_part_then_averaged",
            f"{REPORT}::test_normalisation_clips_each_part_before_averaging"),
           "normalised per part (Pereira's two ceilings), then averaged"),
    Mutant("ceil-2", "brainalign.py", "return float(np.clip(value / ceiling, 0.0, 1.0))",
           "return float(value / ceiling)", (REPORT,), "normalised scores clipped to [0, 1]"),
    Mutant("ceil-3", "brainalign.py", "return float(np.clip(value / ceiling, 0.0, 1.0))",
           "return float(np.clip(value / ceiling, -1.0, 1.0))", (f"{ENC}::test_normalize",),
           "a negative score normalises to 0"),
    # --- layer choice (one layer per model and dataset, as the authors registered it)
    Mutant("layer-1", "brainalign.py",
           'candidate = np.array([embeddings or not n.endswith("embeddings") for n in layer_names])',
           "candidate = np.ones(len(layer_names), dtype=bool)",
           (f"{RECORDS}::test_pereira_layer_is_chosen_on_the_mean_of_its_experiments",),
           "embedding outputs are not best-layer candidates unless asked (the paper counts blocks)"),
    Mutant("layer-2", "brainalign.py", "            best = ref[\"best_layer\"]\n",
           "            pass\n", (f"{RECORDS}::test_layer_choice_pereira_reads_blank_at_the_pereira_layer",),
           "layer_choice pereira: Blank2014 is read at the layer chosen on Pereira2018"),
    Mutant("layer-3", "brainalign.py",
           'else float(np.mean([p["layers"][best] for p in parts]))',
           'else float(list(parts)[-1]["layers"][best])',
           (f"{REPORT}::test_normalisation_is_per_part_then_averaged",
            f"{RECORDS}::test_layer_choice_pereira_reads_blank_at_the_pereira_layer"),
           "collect: a dataset's score is the mean of its parts at the chosen layer"),
    # --- extraction choices that are part of the provenance and cache key
    Mutant("model-1", "models.py", 'return readout == "paper" and config.model_type == "llama"',
           'return readout != "paper" and config.model_type == "llama"',
           (f"{MODELS}::test_llama_paper_readout_is_post_attention_layernorm",),
           "LLaMA is read at post_attention_layernorm (PR #194), other families at the block output"),
    Mutant("model-2", "models.py", 'return token_type_ids == "pass" and "token_type_ids" in tok.model_input_names',
           'return "token_type_ids" in tok.model_input_names',
           (f"{MODELS}::test_token_type_ids_as_brainscore_or_as_the_authors",),
           "token_type_ids dropped by default (PR #194), passed only when asked"),
    Mutant("model-3", "models.py", '"dtype": dtype, "readout": readout,', '"readout": readout,', KEYED,
           "the provenance (cache and record key) includes the dtype"),
    Mutant("model-4", "models.py", '"dtype": dtype, "readout": readout,', '"dtype": dtype,', KEYED,
           "the provenance (cache and record key) includes the readout"),
    # --- the paper's tables: a relative change needs a positive vanilla score
    Mutant("table-13", "brainalign.py", "ok = np.isfinite(vanilla) & (vanilla > 0)",
           "ok = np.isfinite(vanilla) & (vanilla != 0)",
           (f"{RECORDS}::test_a_vanilla_score_at_or_below_zero_gets_no_percentage",),
           "a vanilla score <= 0 gets no percentage (its sign would flip the change)"),
    # --- Wehbe2014: Toneva & Wehbe's ridge and Aw & Toneva's aggregation
    Mutant("wehbe-1", "brainalign.py", "cost[i] += r2_cost(", "cost[i] = r2_cost(", RIDGE,
           "the penalty minimises 1 - R^2 summed over all inner folds, not the last one"),
    Mutant("wehbe-2", "brainalign.py", "for train, val in inner_folds(x.shape[0], n_splits):",
           "for train, val in [(np.random.RandomState(0).permutation(x.shape[0])[t], "
           "np.random.RandomState(0).permutation(x.shape[0])[v]) for t, v in inner_folds(x.shape[0], n_splits)]:",
           RIDGE, "inner folds are unshuffled contiguous blocks (KFold without shuffle)"),
    Mutant("wehbe-3", "brainalign.py", "best = np.argmin(cost, axis=0)",
           "best = len(penalties) - 1 - np.argmin(cost[::-1], axis=0)", RIDGE,
           "on a tie the smallest penalty wins (np.argmin, the first of the lambdas)"),
    Mutant("wehbe-4", "brainalign.py", "return Score(score=float(subj.mean()), per_split=per_fold.mean(axis=1)",
           "return Score(score=float(r.mean()), per_split=per_fold.mean(axis=1)",
           (WEHBE_AGG, f"{AGG}::test_time_series_parts_average_voxels_per_subject_then_subjects"),
           "Wehbe2014 score: per-subject mean over voxels, then the mean over subjects (not voxels pooled)"),
    # --- Futrell2018: surprisal against reading times
    Mutant("futrell-1", "brainalign.py", "keep = word_in_sentence != 1", "keep = word_in_sentence >= 0",
           (f"{FUTRELL}::test_reading_time_r_is_pearson_with_the_mean_reader_without_first_words",),
           "the first word of each sentence is not scored"),
    Mutant("futrell-2", "brainalign.py", 'return {"score": abs(r), "r": r,', 'return {"score": r, "r": r,',
           (f"{FUTRELL}::test_mean_reader_as_prediction_scores_one",),
           "the behaviour score is |r| (Brain-Score's pearson_correlation), the sign kept apart"),
    Mutant("futrell-3", "brainalign.py", "uncorrected[k] = abs(pearson(a[:, None], b[:, None])[0])",
           "uncorrected[k] = pearson(a[:, None], b[:, None])[0]",
           (f"{FUTRELL}::test_split_half_ceiling_equals_brainscore",), "the split-half consistency is |r|"),
    Mutant("futrell-4", "brainalign.py", "corrected = 2 * uncorrected / (1 + uncorrected)",
           "corrected = uncorrected", (f"{FUTRELL}::test_split_half_ceiling_equals_brainscore",),
           "the split-half ceiling is Spearman-Brown corrected"),
    Mutant("futrell-5", "models.py", "/ math.log(2)).cpu().numpy()", ").cpu().numpy()",
           (f"{FUTRELL}::test_surprisal_equals_brainscore_per_word_across_truncation",),
           "surprisal in bits (-log2 p), not nats"),
    # --- Brain-Score's 2023 numerics: the float32 fit
    Mutant("cut-3", "brainalign.py", "x = np.asarray(x_train, dtype=np.float32)",
           "x = np.asarray(x_train, dtype=np.float64)",
           (f"{ENC}::test_brainscore_2023_numerics_equal_sklearn_15_fixtures",),
           "brainscore-2023 numerics: the activations are cast to float32 before the fit"),
]

# Mutants that cannot change any result, so no test can kill them: id -> why. Kept here so nobody
# adds them again; not run.
EQUIVALENT = {
    "table-bh-clip": "bh_fdr's clip at 1: after the running minimum from the largest p, every adjusted "
                     "value is at most max(p) <= 1, so np.minimum(adjusted, 1.0) never changes a value",
    "ctx-causal-mask": "dropping the attention mask for causal models: padding is on the right, and causal "
                       "attention never looks right, so the hidden states read are identical",
}


def copy_tree(dest):
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True,
                    dirs_exist_ok=True)


def pytest(workdir, tests, timeout):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return "timeout"


def run_mutant(m, workdir, timeout):
    """-> KILLED, SURVIVED or STALE; the file is restored whatever happens."""
    path = Path(workdir, m.file)
    text = path.read_text()
    if text.count(m.original) != 1:
        return "STALE"
    try:
        path.write_text(text.replace(m.original, m.replacement))
        code = pytest(workdir, m.tests, timeout)
    finally:
        path.write_text(text)
    return "SURVIVED" if code == 0 else "KILLED"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--only", nargs="+", metavar="ID", help="run only these mutants")
    p.add_argument("--timeout", type=float, default=600, help="seconds per pytest run")
    args = p.parse_args(argv)
    ids = [m.id for m in MUTANTS]
    assert len(set(ids)) == len(ids), "mutant ids must be unique"
    chosen = [m for m in MUTANTS if not args.only or m.id in args.only]
    unknown = set(args.only or ()) - set(ids)
    if unknown:
        p.error(f"unknown mutant id(s): {', '.join(sorted(unknown))}; see --list")
    if args.list:
        for m in MUTANTS:
            print(f"{m.id:10} {m.file:14} {m.breaks}")
        for key, why in EQUIVALENT.items():
            print(f"{key:10} {'equivalent':14} {why}")
        return 0
    with tempfile.TemporaryDirectory(prefix="brainalign-mutants-") as workdir:
        copy_tree(workdir)
        tests = list(dict.fromkeys(t for m in chosen for t in m.tests))
        print(f"clean copy: {' '.join(tests)}", flush=True)
        if pytest(workdir, tests, args.timeout) != 0:
            sys.exit("the tests fail on the unmutated code: fix them first, a kill would mean nothing")
        results = {}
        for m in chosen:
            start = time.time()
            results[m.id] = run_mutant(m, workdir, args.timeout)
            print(f"{results[m.id]:8} {m.id:10} {time.time() - start:5.0f} s  {m.breaks}", flush=True)
    counts = {k: sum(r == k for r in results.values()) for k in ("KILLED", "SURVIVED", "STALE")}
    areas = dict.fromkeys(i.split("-")[0] for i in results)
    for area in areas:
        mine = [r for i, r in results.items() if i.split("-")[0] == area]
        print(f"  {area:6} {sum(r == 'KILLED' for r in mine)}/{len(mine)} killed")
    print(f"kill rate: {counts['KILLED']}/{len(results)} killed, {counts['SURVIVED']} survived, "
          f"{counts['STALE']} stale; {len(EQUIVALENT)} known equivalent mutants not run")
    return 1 if counts["SURVIVED"] or counts["STALE"] else 0


if __name__ == "__main__":
    sys.exit(main())
