"""Mutation testing: plant realistic one-line bugs, one at a time, in a copy of the project, and check
that the tests catch each of them. A script, not a test (pytest does not collect it); stdlib only.

    python tests/mutate.py               # every mutant: prints each result and the kill rate
    python tests/mutate.py --list        # the mutants and the scientific choice each one breaks
    python tests/mutate.py --check       # only: does every snippet still occur exactly once?
    python tests/mutate.py --only ID ... # some mutants (an area prefix works too: --only fit- ridge-)

Each mutant replaces one exact snippet of one file and runs the tests that guard that choice
(`pytest -x -q`). KILLED: the tests fail, as they must. SURVIVED: they pass, so the bug would go
unnoticed: add a test. STALE: the snippet is no longer in the file (or not exactly once), so the code
changed under the mutant: update it. BROKEN: pytest could not run the tests (exit code other than 0 or 1:
a mistyped test id, or a mutant that does not import), which proves nothing. The clean copy is tested
first, so a test that fails anyway cannot pass for a kill. Mutants that cannot change any result are
listed in EQUIVALENT with the reason and are not run.

Results (December 2026, `python tests/mutate.py`, about 6 minutes on a shared 2-core machine): 169
mutants, 169 killed (100%), none survived, stale or broken; 3 equivalent, not run. Per area: split 9,
fit 8, fast 5, pearson 5, agg 8, layer 16, series 20, ridge 9, futrell 13, table 13, norm 5, record 16,
par 3 (forked workers, the projected cost, a Ctrl-C that stops only run()'s scorer), data 20, model 19.

How the suite got there. After the redesign (60d5402) thirteen mutants survived and were killed by
strengthening the tests: fit-5..7, fast-2..5, layer-9 (the fast fit against an SVD reference with more
targets than stimuli; each split fit in the string order of the stimulus ids, against sklearn 1.5's
steps written out), layer-10, series-6, series-8 (a TR without words; the default delays by hand),
norm-3, norm-4. A pass over the suite for five kinds of weak test then added 14 mutants, each of which
survived the tests it names as they were: a setting lost on its way down from the command line or
brainalign.run (layer-13..16, futrell-12, table-14, record-14, record-15: tests/test_run.py records
every models and data call and scores Blank2014 against Brain-Score 2023's layer score transcribed);
an expectation built with the code under test (series-15: the Wehbe2014 test transcribes Toneva &
Wehbe's per-fold pipeline); a fixture too regular (futrell-13: 13 subjects; series-16: the PCA fit on
some words only; the ridge fixtures' inner folds of unequal size); an assertion that could not fail
(norm-5, record-16); a strict test loose on another BLAS kernel (fit-8: the sklearn 1.5 fixtures'
lenient branch bounds the mean |r - fixture|, which the float64 fit exceeds). The speed work rewrote
the ridge and the splits; ridge-1..8 quote the new ridge_cv (ridge-8 survived until the transcription
test got a nearly constant block, whose variance only a direct np.var resolves), series-17 and -18 pin
Toneva's empty-TR quirk (NaN, then 0 for the run), par-1..3 the parallel path. Scoring a model's layers
together per block of voxels added pearson-4, -5 (the stacked r from each fold's sums, Chan's update),
series-19, -20 (every voxel in one block; each layer its own fit) and ridge-9 (factors reused, block by
block). Equivalent (EQUIVALENT
below): an attention mask for causal models, the run floor in pca_training_words, and "brainscore" in
the record key (models.identity already carries it).

Not a mutant here: the fast fit's centring matrix C = I - 11ᵀ/n instead of I (fit_predict_fast) changes
float32 predictions only at rounding level, as much as BLAS kernels do; tests/bench_fit.py measures it.
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
IGNORED = (".git", ".ci-venv", ".venv", "__pycache__", ".pytest_cache", "results", "results-demo")


@dataclass(frozen=True)
class Mutant:
    id: str            # area-number, e.g. "agg-1"
    file: str          # path relative to the repository root
    original: str      # exact snippet; must occur exactly once
    replacement: str
    tests: tuple       # pytest arguments: files or node ids
    breaks: str        # the scientific choice the bug breaks


BA, DATA_PY, MODELS_PY = "brainalign.py", "data.py", "models.py"
ENC, AGG, SERIES = "tests/test_encoder.py", "tests/test_aggregation.py", "tests/test_timeseries.py"
TONEVA, WEHBE, FUTRELL = "tests/test_toneva_pca.py", "tests/test_wehbe.py", "tests/test_futrell.py"
REPORT, RUN, DATA = "tests/test_report.py", "tests/test_run.py", "tests/test_data.py"
MODELS, CLI, PARALLEL = "tests/test_models.py", "tests/test_cli.py", "tests/test_parallel.py"


def nodes(file, *names):
    """Node ids of the named tests of one file."""
    return tuple(f"{file}::{name}" for name in names)


GOLDEN = nodes(ENC, "test_shuffle_splits_golden_indices")
KFOLD = nodes(ENC, "test_kfold_contiguous_with_gap_follows_toneva_wehbe", "test_split_errors")
CUTOFF = nodes(ENC, "test_float64_fit_equals_the_svd_reference_at_the_cutoff")
FAST = nodes(ENC, "test_fast_fit_equals_the_svd_reference_with_more_targets_than_stimuli")
ORDER = nodes(ENC, "test_each_split_is_fit_in_the_string_order_of_the_stimulus_ids")
BY_HAND = nodes(ENC, "test_tiny_exact_fit_by_hand", "test_predictions_equal_sklearn_linear_regression")
BEST = nodes(ENC, "test_score_layers_keeps_the_best_layer")
AGG_HAND = nodes(AGG, "test_score_is_the_mean_over_splits_of_the_median_over_targets",
             "test_per_subject_is_the_mean_over_splits_of_the_subjects_median",
             "test_mad_is_the_median_absolute_deviation_from_the_median")
PARTS = nodes(AGG, "test_a_datasets_parts_are_averaged_layer_by_layer_then_one_layer_kept")
PASSED_DOWN = nodes(AGG, "test_stimulus_parts_take_the_median_and_the_datasets_subjects")
TS_AGG = nodes(WEHBE, "test_summarize_time_series_by_hand")
TS_R = nodes(WEHBE, "test_time_series_r_equals_toneva_folds_and_aw_concatenation")
TOGETHER = nodes(SERIES, "test_layers_scored_together_equal_each_alone_whatever_the_blocks")
FOLD_R = nodes(ENC, "test_fold_pearson_equals_scipy_per_fold_and_on_the_stack")
PCA_WORDS = nodes(TONEVA, "test_tiny_case_by_hand",
                  "test_every_fold_equals_the_transcription_on_hand_made_timings")
TR_HAND = nodes(SERIES, "test_tr_features_by_hand")
RIDGE = nodes(WEHBE, "test_inner_folds_are_sklearn_kfold", "test_ridge_cv_equals_toneva_transcription",
          "test_ridge_cv_equals_transcription_with_more_features_than_samples")
RT = nodes(FUTRELL, "test_reading_time_r_is_pearson_with_the_mean_reader_without_first_words")
CEILING = nodes(FUTRELL, "test_split_half_ceiling_equals_brainscore")
BEHAVIOUR = nodes(FUTRELL, "test_behaviour_stays_out_of_the_brain_average_and_the_headline")
PINNED = nodes(REPORT, "test_comparison_statistics_are_pinned_for_the_seed",
               "test_relative_change_and_means_by_hand")
AVERAGE = nodes(REPORT, "test_the_average_is_over_the_papers_datasets_only")
LAYER_CHOICE = nodes(REPORT, "test_layer_choice_pereira_reads_blank_at_the_pereira_layer")
NORMALISED = nodes(REPORT, "test_normalisation_is_per_part_then_averaged",
               "test_normalisation_clips_each_part_before_averaging")
KEYED = nodes(RUN, "test_records_are_keyed_by_everything_that_produced_them_and_nothing_else")
BAD_RECORD = nodes(RUN, "test_a_bad_record_is_named_moved_aside_and_recomputed")
WEHBE_BAD = nodes(DATA, "test_wehbe2014_bad_files")
CACHE = nodes(MODELS, "test_cache_hit_returns_the_same_arrays_without_loading")
CONTEXT = nodes(MODELS, "test_prepare_context_is_brain_scores")
PLAIN_PASS = nodes(MODELS, "test_matches_a_plain_forward_pass_of_the_context")
IDENTITY = nodes(MODELS, "test_identity_needs_no_network_and_no_model")
WORD_FEATURES = nodes(WEHBE, "test_word_features_are_tonevas_scheme[gpt2]")
SETTINGS = nodes(RUN, "test_every_setting_reaches_the_models_the_data_and_the_record_key")
BRAINSCORE = nodes(RUN, "test_brainscore_reaches_the_fit_the_readout_the_layers_and_the_ceilings")
LAYER_CHOICE_CLI = nodes(RUN, "test_layer_choice_pereira_from_the_command_line_reaches_every_brainscore_dataset")
FIXTURES_2023 = nodes(ENC, "test_brainscore_2023_numerics_equal_sklearn_15_fixtures")

MUTANTS = [
    # --- splits: Brain-Score's ShuffleSplit(10, train 0.9, seed 1); contiguous folds with gaps (Toneva)
    Mutant("split-1", BA, "train_size=0.9, seed=1):", "train_size=0.9, seed=0):", GOLDEN,
           "split seed 1 (Brain-Score)"),
    Mutant("split-2", BA, "n_test, rng = n - int(np.floor(train_size * n)),",
           "n_test, rng = n - int(np.ceil(train_size * n)),", GOLDEN, "train size rounded down (sklearn), test size up"),
    Mutant("split-3", BA, "[(p[n_test:], p[:n_test]) for p in", "[(p[:n - n_test], p[n - n_test:]) for p in", GOLDEN,
           "the test set is the permutation's head"),
    Mutant("split-4", BA, "for p in [rng.permutation(n) for _ in range(n_splits)]]",
           "for p in [np.random.RandomState(seed).permutation(n) for _ in range(n_splits)]]", GOLDEN,
           "one generator draws a fresh permutation per split (not the same split 10 times)"),
    Mutant("split-5", BA, "test[mid:len(test) - mid]", "test[mid:]", KFOLD,
           "a middle test block gives up `gap` samples at both ends"),
    Mutant("split-6", BA, "edges, splits = [k * (n // n_folds) for k in range(n_folds)] + [n], []",
           "edges, splits = [k * -(-n // n_folds) for k in range(n_folds)] + [n], []", KFOLD,
           "fold size floor(n / n_folds), the last fold takes the rest"),
    Mutant("split-7", BA, "splits, y = kfold_splits(ds.responses.shape[0], ds.n_folds, ds.gap),",
           "splits, y = kfold_splits(ds.responses.shape[0], ds.n_folds),", TS_R,
           "Wehbe2014's 5-TR gap reaches the fold builder"),
    Mutant("split-8", BA, "        if shared := np.intersect1d(train, test).size:", "        if shared := 0:",
           nodes(ENC, "test_cross_validate_checks_every_split"),
           "a split whose test stimuli are also fit is refused"),
    Mutant("split-9", BA, "if len(train) < 2 or len(test) < 3:", "if len(train) < 2 or len(test) < 2:", KFOLD,
           "at least 3 test stimuli per split (with 2, every r is +-1)"),
    # --- the fit: sklearn LinearRegression's steps in NUMERICS; Brain-Score's row order
    Mutant("fit-1", BA, '"brainscore-2023": (np.float32, None),', '"brainscore-2023": (np.float64, None),',
           nodes(ENC, "test_the_2023_fit_runs_in_float32_and_agrees_on_a_well_conditioned_design") + ORDER,
           "the paper's fit runs in float32 (Brain-Score 2023 with sklearn <= 1.5)"),
    Mutant("fit-2", BA, '"float64": (np.float64, 1e-6),', '"float64": (np.float64, 1e-5),', CUTOFF,
           "--brainscore fit: singular values at or below 1e-6 x the largest are dropped (sklearn >= 1.9)"),
    Mutant("fit-3", BA, "    w = scipy.linalg.lstsq(x - x_mean, y - y_mean, cond=cond)[0]",
           "    w = scipy.linalg.lstsq(x, y - y_mean, cond=cond)[0]", BY_HAND + CUTOFF,
           "the features are centred before the fit (an intercept, sklearn's _preprocess_data)"),
    Mutant("fit-4", BA, "return np.asarray(x_test, dtype) @ w + (y_mean - x_mean @ w)",
           "return np.asarray(x_test, dtype) @ w + y_mean", BY_HAND, "the intercept is y_mean - x_mean @ w"),
    Mutant("fit-5", BA, "        train, test = order[np.sort(rank[train])], order[np.sort(rank[test])]",
           "        train, test = np.sort(train), np.sort(test)", ORDER,
           "each split is fit in the order of the stimulus ids (Brain-Score's sortby), not stored order"),
    Mutant("fit-6", BA,
           'order = np.argsort(np.asarray(ids), kind="stable") if ids is not None else np.arange(len(x))',
           "order = np.arange(len(x))", ORDER, "the stimulus ids given set the row order"),
    Mutant("fit-7", BA, "r.append(pearson(fit_predict_fast(x[train], y[train], x[test], numerics), y[test]))",
           "r.append(pearson(fit_predict_fast(x[train], y[train], x[test]), y[test]))", ORDER,
           "the numerics asked of cross_validate reach the fit"),
    Mutant("fit-8", BA, '"brainscore-2023": (np.float32, None),', '"brainscore-2023": (np.float64, 1e-6),',
           FIXTURES_2023, "the 2023 fit, told from the float64 fit by sklearn 1.5's fixtures on any BLAS kernel"),
    # --- the fast fit: one lstsq on the centred identity where targets outnumber training stimuli
    Mutant("fast-1", BA, "    if y.shape[1] <= len(x):\n        return fit_predict(x, y, x_test, numerics)",
           "    if y.shape[1] > len(x):\n        return fit_predict(x, y, x_test, numerics)", ORDER,
           "with fewer targets than training stimuli the fit is the exact call itself"),
    Mutant("fast-2", BA, "return ((np.asarray(x_test, dtype) - x_mean) @ pinv) @ (y - y_mean) + y_mean",
           "return ((np.asarray(x_test, dtype) - x_mean) @ pinv) @ (y - y_mean)", FAST,
           "fast path: the training means of the targets are added back"),
    Mutant("fast-3", BA, "return ((np.asarray(x_test, dtype) - x_mean) @ pinv)",
           "return ((np.asarray(x_test, dtype)) @ pinv)", FAST,
           "fast path: the test features are centred on the training means"),
    Mutant("fast-4", BA, "pinv = scipy.linalg.lstsq(x - x_mean, eye - eye.mean(axis=0), cond=cond)[0]",
           "pinv = scipy.linalg.lstsq(x - x_mean, eye - eye.mean(axis=0), cond=None)[0]", FAST,
           "fast path: the numerics' cutoff, as the exact call"),
    Mutant("fast-5", BA, "pinv = scipy.linalg.lstsq(x - x_mean, eye - eye.mean(axis=0), cond=cond)[0]",
           "pinv = scipy.linalg.lstsq(x, eye - eye.mean(axis=0), cond=cond)[0]", FAST,
           "fast path: the pseudo-inverse of the centred features"),
    # --- Pearson r; a constant column has none and scores 0
    Mutant("pearson-1", BA, "np.sqrt(yy), n ** 1.5 * np.finfo(np.float64).eps",
           "np.sqrt(yy), 0.0 * np.finfo(np.float64).eps",
           nodes(ENC, "test_numerically_constant_target_scores_zero"),
           "a column constant up to rounding (0.1 repeated) is constant, not noise with |r| ~ 0.9"),
    Mutant("pearson-2", BA, "np.where(ok, norm_x * norm_y, 1.0), 0.0)",
           "np.where(ok, norm_x * norm_y, 1.0), np.nan)",
           nodes(ENC, "test_constant_column_scores_zero_with_warning"),
           "a constant column scores 0, so it cannot poison a median with NaN"),
    Mutant("pearson-3", BA, "y - (my := y.mean(axis=0))", "y + 0 * (my := y.mean(axis=0))",
           nodes(ENC, "test_pearson_equals_scipy"), "both sides are centred (Pearson, not cosine)"),
    Mutant("pearson-4", BA, "(s + n * u * v).sum(axis=0, keepdims=True)", "s.sum(axis=0, keepdims=True)", FOLD_R,
           "the stacked folds' r counts the spread of the folds' means (Chan, Golub & LeVeque's update)"),
    Mutant("pearson-5", BA, "np.average(m, axis=0, weights=n[:, 0])", "m.mean(axis=0)", FOLD_R,
           "the stack's mean weighs each fold by its length"),
    # --- Brain-Score's aggregation: median over targets, mean over splits; MAD over subjects
    Mutant("agg-1", BA, "    per_split = np.median(r, axis=1)", "    per_split = np.mean(r, axis=1)",
           AGG_HAND, "median r over targets in each split (Brain-Score), not the mean"),
    Mutant("agg-2", BA, "return Score(score=float(per_split.mean()), per_split=per_split",
           "return Score(score=float(np.median(per_split)), per_split=per_split", AGG_HAND,
           "mean over splits, not the median"),
    Mutant("agg-3", BA, "float(np.median(r[:, subjects == s], axis=1).mean())",
           "float(r[:, subjects == s].mean(axis=1).mean())", AGG_HAND,
           "per-subject score: median over the subject's targets"),
    Mutant("agg-4", BA, "    return float(np.median(np.abs(np.subtract(values, np.median(values)))))",
           "    return float(np.mean(np.abs(np.subtract(values, np.median(values)))))", AGG_HAND,
           "error bar = median absolute deviation, not the mean absolute deviation"),
    Mutant("agg-5", BA, "np.subtract(values, np.median(values))", "np.subtract(values, np.mean(values))",
           AGG_HAND, "the MAD is taken around the median of the subjects, not their mean"),
    Mutant("agg-6", BA, "per_target=r.mean(axis=0),", "per_target=np.median(r, axis=0),", AGG_HAND,
           "a target's r is its mean over splits"),
    Mutant("agg-7", BA, "per_subject = {str(s): float(r[subjects == s].mean()) for s",
           "per_subject = {str(s): float(np.median(r[subjects == s])) for s", TS_AGG,
           "Wehbe2014: mean r over a subject's voxels, as Aw & Toneva's scripts report"),
    Mutant("agg-8", BA,
           "return Score(score=float(np.mean(list(per_subject.values()))), per_split=per_fold.mean(axis=1),",
           "return Score(score=float(r.mean()), per_split=per_fold.mean(axis=1),", TS_AGG,
           "Wehbe2014 score: the mean over subjects of their means (not voxels pooled)"),
    # --- every layer, the one kept; settings passed down
    Mutant("layer-1", BA, "return int(np.argmax(np.where(candidate, mean, -np.inf))), mean",
           "return int(np.flatnonzero(candidate)[-1]), mean", BEST, "the best layer, not the last"),
    Mutant("layer-2", BA,
           'candidate = np.isfinite(mean) & [embeddings or not name.endswith("embeddings") for name in '
           'layer_names]', "candidate = np.isfinite(mean) & [True for name in layer_names]", BEST,
           "embeddings are not best-layer candidates unless asked (the paper counts blocks)"),
    Mutant("layer-3", BA, "mean = np.atleast_2d(np.asarray(scores, dtype=np.float64)).mean(axis=0)",
           "mean = np.atleast_2d(np.asarray(scores, dtype=np.float64))[-1]", BEST,
           "a dataset's parts (Pereira's experiments) are averaged layer by layer, not the last one kept"),
    Mutant("layer-4", BA, "names, embeddings=settings.brainscore)", "names)", PARTS,
           "--brainscore lets the embeddings compete (Brain-Score 2.3.0)"),
    Mutant("layer-5", BA, '"best_layer": best, "score": float(mean[best]),',
           '"best_layer": best, "score": float(mean.max()),', PARTS,
           "the record's score is the chosen block's, not the best of all layers"),
    Mutant("layer-6", BA, '            best = ref["best_layer"]\n', "            pass\n", LAYER_CHOICE,
           "--layer-choice pereira: Blank2014 is read at the layer chosen on Pereira2018"),
    Mutant("layer-7", BA, 'if settings.layer_choice == "pereira" and ref and rec["kind"] == "brain" \\',
           'if settings.layer_choice == "pereira" and ref \\', LAYER_CHOICE,
           "--layer-choice pereira leaves Wehbe2014 (not Brain-Score's) at its own layer"),
    Mutant("layer-8", BA, 'values = [p["layers"][best] for p in rec["parts"].values()]',
           'values = [list(rec["parts"].values())[-1]["layers"][best]]', NORMALISED,
           "a dataset's score is the mean of its parts at the chosen layer"),
    Mutant("layer-9", BA,
           "return _map(lambda i: summarize(cross_validate(acts[:, i], responses, splits, numerics, ids), subjects),",
           "return _map(lambda i: summarize(cross_validate(acts[:, i], responses, splits, numerics), subjects),",
           ORDER, "score_layers passes the stimulus ids down to the fit"),
    Mutant("layer-10", BA,
           "score_layers(a, ds.responses, ds.subjects, ds.stimulus_ids, settings.numerics,",
           "score_layers(a, ds.responses, ds.subjects, None, settings.numerics,", PASSED_DOWN,
           "run_one passes the dataset's stimulus ids to score_layers"),
    Mutant("layer-11", BA,
           "score_layers(a, ds.responses, ds.subjects, ds.stimulus_ids, settings.numerics,",
           'score_layers(a, ds.responses, ds.subjects, ds.stimulus_ids, "brainscore-2023",', PASSED_DOWN,
           "run_one passes --brainscore's float64 fit to score_layers"),
    Mutant("layer-12", BA, 'property(lambda self: "float64" if self.brainscore else "brainscore-2023")',
           'property(lambda self: "brainscore-2023")', nodes(ENC, "test_numerics_choice"),
           "--brainscore selects the float64 fit"),
    Mutant("layer-13", BA, '"dtype": settings.dtype, "batch_size"', '"dtype": "float32", "batch_size"', SETTINGS,
           "--dtype reaches the models' passes (activations, word features, surprisal)"),
    Mutant("layer-14", BA, 'options["brainscore"] = settings.brainscore', 'options["brainscore"] = False',
           BRAINSCORE, "--brainscore reaches the models: Brain-Score's readout and token types"),
    Mutant("layer-15", BA, "models.layer_names(source, brainscore=settings.brainscore)", "models.layer_names(source)",
           BRAINSCORE, "the record names the layers of the readout that was read"),
    Mutant("layer-16", BA, 'if settings.layer_choice == "pereira" and ref and rec["kind"] == "brain"',
           'if settings.layer_choice == "pereira" and ref and d == "Blank2014"', LAYER_CHOICE + LAYER_CHOICE_CLI,
           "--layer-choice pereira reads every Brain-Score dataset (Fedorenko2016 too) at Pereira2018's layer"),
    # --- Wehbe2014: Toneva & Wehbe's PCA training words (TR_to_word_CV_ind), TR features
    Mutant("series-1", BA, "tr_train = np.isin(fold, fold[train])", "tr_train = np.isin(np.arange(n), train)",
           PCA_WORDS, "their indicator: every TR outside the test fold trains, the gap TRs included"),
    Mutant("series-2", BA, "fit[kept] = tr_train[tr[kept] - (20 * run[kept] + 15 * (run[kept] - 1)) - 1]",
           "fit[kept] = tr_train[tr[kept] - (20 * run[kept] + 15 * (run[kept] - 1))]", PCA_WORDS,
           "their quirk: a word takes the status of the sample one TR early"),
    Mutant("series-3", BA, "kept = tr <= ds.n_tr - 15", "kept = tr < ds.n_tr - 15", PCA_WORDS,
           "their bound: words up to TR len(runs) - 15 inclusive can fit"),
    Mutant("series-4", BA, 'run = np.maximum(np.searchsorted(ds.sample_tr[start] - 20, tr, side="right"), 1)',
           'run = np.maximum(np.searchsorted(ds.sample_tr[start] - 20, tr, side="left"), 1)', PCA_WORDS,
           "their runs[words_id]: a run starts at its first (trimmed) TR, so a word there is in the new run"),
    Mutant("series-5", BA, "np.float64(word_features[pca_training_words(ds, train)])",
           "np.float64(word_features[ds.first_word:])",
           nodes(TONEVA, "test_tr_features_fits_pca_on_those_words"),
           "the PCA is fitted on the fold's training words only (no test leak)"),
    Mutant("series-6", BA, "z = (word_features[words] - mean) @ comps.T",
           "z = word_features[words] @ comps.T", TR_HAND,
           "words are projected after subtracting the PCA mean (an empty TR is 0 of the centred scores)"),
    Mutant("series-7", BA, "delayed[d:, j * z.shape[1]:(j + 1) * z.shape[1]] = per_tr[:-d]",
           "delayed[:-d, j * z.shape[1]:(j + 1) * z.shape[1]] = per_tr[d:]", TR_HAND,
           "delays look back (TRs t-1..t-4), never forward"),
    Mutant("series-8", BA, "delays=(1, 2, 3, 4)):", "delays=(1, 2, 3, 5)):", TR_HAND,
           "the default delays are TRs t-1, t-2, t-3, t-4"),
    Mutant("series-9", BA, "per_tr /= np.bincount(tr_of, minlength=ds.n_tr)[:, None]", "per_tr /= 1.0",
           TR_HAND, "a TR's feature is the mean of its words, not the sum"),
    Mutant("series-17", BA, "per_tr /= np.bincount(tr_of, minlength=ds.n_tr)[:, None]",
           "per_tr /= np.maximum(np.bincount(tr_of, minlength=ds.n_tr), 1)[:, None]", TR_HAND + TS_R,
           "Toneva's quirk: a TR without words is NaN, which zeroes its delay columns in that run"),
    Mutant("series-18", BA, "return np.nan_to_num(kept)", "return kept", TR_HAND + TS_R,
           "their nan_to_num after the per-run z-scores: those columns are 0, not NaN"),
    Mutant("series-10", BA, "kept[run == r] = zscore(kept[run == r])", "kept[run == r] = kept[run == r]",
           TR_HAND, "features z-scored within each run"),
    Mutant("series-11", BA, "run = np.cumsum(np.diff(ds.sample_tr, prepend=ds.sample_tr[0]) != 1)",
           "run = np.zeros(len(ds.sample_tr), dtype=int)", TR_HAND,
           "runs are the blocks of consecutive kept TRs (z-scored separately)"),
    Mutant("series-12", BA, "tr_of = ds.word_tr[words := np.arange(ds.first_word, len(ds.texts))]",
           "tr_of = ds.word_tr[words := np.arange(len(ds.texts))]",
           nodes(SERIES, "test_first_words_and_trimmed_trs_fit_no_pca"),
           "the first 20 words (no full context) get no features"),
    Mutant("series-13", BA, "[(zscore(x[test]), ridge_factors(", "[(x[test], ridge_factors(",
           TS_R, "the test fold's features are z-scored on its own statistics (Toneva's choice)"),
    Mutant("series-14", BA, "r = np.concatenate([[stacked for _, stacked in b] for b in blocks], axis=1)",
           "r = np.concatenate([[per_fold.mean(axis=0) for per_fold, _ in b] for b in blocks], axis=1)", TS_R,
           "r of the stacked test folds (Aw & Toneva), not the mean of per-fold r"),
    Mutant("series-19", BA, "cols = slice(k * chunk, (k + 1) * chunk)", "cols = slice(k * chunk, (k + 1) * chunk - 1)",
           TOGETHER, "every voxel is in one block of targets"),
    Mutant("series-20", BA, "tests)\n                for fits in fitted]", "tests)\n                for fits in fitted[:1] * len(fitted)]",
           TOGETHER, "each layer is scored with its own TR features and ridge, in a block shared by all layers"),
    Mutant("series-15", BA, "train, n_components=10, delays", "train, n_components=20, delays", TS_R,
           "10 PCA components per word (get_nlp_features_fixed_length's PCA(n_components=10))"),
    Mutant("series-16", BA, "z = (word_features[words] - mean) @ comps.T",
           "z = (word_features[words] - word_features[words].mean(axis=0)) @ comps.T", TR_HAND,
           "words are centred on the PCA's own mean (its training words'), not on all words' mean"),
    # --- Wehbe2014: Toneva & Wehbe's cross-validated ridge
    Mutant("ridge-1", BA, "cost += np.where(slow, 0, (coef @ rhs + yy_k) / ((hi - lo) * var))",
           "cost = np.where(slow, 0, (coef @ rhs + yy_k) / ((hi - lo) * var))", RIDGE,
           "the penalty minimises 1 - R^2 summed over all inner folds, not the last one"),
    Mutant("ridge-2", BA, "best[cols] = np.argmin(cost, axis=0)",
           "best[cols] = len(pen) - 1 - np.argmin(cost[::-1], axis=0)", RIDGE,
           "on a tie the smallest penalty wins (np.argmin, the first of the lambdas)"),
    Mutant("ridge-3", BA, "RIDGE_PENALTIES = 10.0 ** np.arange(-6, 10)",
           "RIDGE_PENALTIES = 10.0 ** np.arange(-5, 10)", RIDGE, "cross_val_ridge's lambdas 1e-6 .. 1e9"),
    Mutant("ridge-4", BA, "sizes = np.full(n_splits, n // n_splits) + (np.arange(n_splits) < n % n_splits)",
           "sizes = np.full(n_splits, n // n_splits) + (np.arange(n_splits) >= n_splits - n % n_splits)",
           RIDGE, "inner folds are sklearn's KFold: the first n % n_splits blocks are one longer"),
    Mutant("ridge-5", BA, "g, gram = 1 / (lam + pen[:, None]), a.T @ a",
           "g, gram = 1 / (np.sqrt(lam) + pen[:, None]), a.T @ a", RIDGE,
           "the ridge solution V diag(1 / (s^2 + a)) V^T x^T y"),
    Mutant("ridge-7", BA, "h = gram / (lam - lam[:, None] + eye) * (1 - eye)",
           "h = gram / (lam[:, None] - lam + eye) * (1 - eye)", RIDGE,
           "the partial fractions g_k g_l = (g_k - g_l) / (lam_l - lam_k)"),
    Mutant("ridge-8", BA, "slow = ~(var > 1e-3 * yy_k / (hi - lo)) | ~apart", "slow = ~apart", RIDGE,
           "a constant validation block costs as in Toneva's R2 through nan_to_num (1 or ~1.8e308)"),
    Mutant("ridge-9", BA, "for i in range(0, y.shape[1], width))", "for i in range(0, y.shape[1], width + 1))",
           nodes(WEHBE, "test_ridge_factors_serve_every_block_of_targets"), "every target is solved, block by block"),
    Mutant("ridge-6", BA, "(s[:, None] ** 2 + pen[best[cols]])", "(s[:, None] ** 2 + pen[best[cols]].max())",
           RIDGE, "each voxel is refitted with its own chosen penalty"),
    # --- Futrell2018: surprisal against reading times; the split-half ceiling
    Mutant("futrell-1", BA, "keep, times = word_in_sentence != 1,", "keep, times = word_in_sentence >= 0,",
           RT, "the first word of each sentence is not scored"),
    Mutant("futrell-2", BA, '"score": abs(r), "r": r,', '"score": r, "r": r,',
           nodes(FUTRELL, "test_mean_reader_as_prediction_scores_one"),
           "the behaviour score is |r| (Brain-Score's pearson_correlation), the sign kept apart"),
    Mutant("futrell-3", BA, "uncorrected[k] = abs(pearson(a[:, None], b[:, None])[0])",
           "uncorrected[k] = pearson(a[:, None], b[:, None])[0]", CEILING,
           "the split-half consistency is |r|"),
    Mutant("futrell-4", BA, "corrected = 2 * uncorrected / (1 + uncorrected)", "corrected = uncorrected",
           CEILING, "the split-half ceiling is Spearman-Brown corrected"),
    Mutant("futrell-5", BA, "return float(np.median(corrected)), corrected, uncorrected",
           "return float(np.mean(corrected)), corrected, uncorrected", CEILING,
           "the ceiling is the median split"),
    Mutant("futrell-6", BA, "def split_half_ceiling(times, n_splits=10, seed=0):",
           "def split_half_ceiling(times, n_splits=10, seed=1):", CEILING, "the halves drawn with seed 0"),
    Mutant("futrell-7", BA, "return np.where(read, times, 0.0).sum(axis=1) / read.sum(axis=1)",
           "return np.where(read, times, 0.0).sum(axis=1) / read.shape[1]", RT,
           "the mean reader skips subjects who did not read the word (xarray's mean)"),
    Mutant("futrell-8", MODELS_PY, "/ np.log(2)", "/ 1.0",
           nodes(FUTRELL, "test_surprisal_equals_brainscore_per_word_across_truncation[gpt2]"),
           "surprisal in bits (-log2 p), not nats"),
    Mutant("futrell-9", BA, 'ceiling = rec["ceiling"] if settings.brainscore else 1.0',
           'ceiling = rec["ceiling"]', BEHAVIOUR,
           "behaviour is divided by its ceiling only under --brainscore"),
    Mutant("futrell-10", BA, 'run = {r["dataset"] for r in records if r["kind"] != "behaviour"}',
           'run = {r["dataset"] for r in records}', nodes(FUTRELL, "test_cli_scores_futrell2018_end_to_end"),
           "behaviour never enters the brain Average"),
    Mutant("futrell-11", BA, "def compare_pairs(scores, pairs, columns, headline=PAPER_DATASETS):",
           'def compare_pairs(scores, pairs, columns, headline=PAPER_DATASETS + ("Futrell2018",)):',
           BEHAVIOUR, "the headline gain is over the brain datasets only"),
    Mutant("futrell-12", BA, "models.surprisal(source, parts[0].words, **options)",
           "models.surprisal(source, parts[0].words)", SETTINGS,
           "--device, --dtype, --batch-size and --cache-dir reach the surprisal pass"),
    Mutant("futrell-13", BA, "rng.choice(n, n // 2, replace=False)", "rng.choice(n, -(-n // 2), replace=False)",
           CEILING, "the first half holds len // 2 subjects, rounded down (an odd count tells)"),
    # --- the paper's tables
    Mutant("table-1", BA, "100.0 * (tuned - vanilla) / np.where(ok, vanilla, 1.0)",
           "100.0 * (tuned - vanilla) / np.where(ok, tuned, 1.0)", PINNED,
           "relative change over the vanilla base"),
    Mutant("table-2", BA, '"headline": float(np.mean(means)) if means',
           '"headline": float(mean.get("Average", np.nan)) if means', PINNED,
           "headline = mean of the per-dataset mean gains (the paper's 6.2%), not the Average's gain"),
    Mutant("table-3", BA, "mean = {c: float(np.mean([r[c] for r in rows if c in r]))",
           "mean = {c: float(np.median([r[c] for r in rows if c in r]))", PINNED,
           "a column's gain is the mean over pairs"),
    Mutant("table-4", BA, 'row["p_fdr"] = float(q)', 'row["p_fdr"] = row["p"]',
           nodes(REPORT, "test_correlation_table_p_values_are_pearsons_and_fdr_corrected"),
           "correlation p-values are FDR-corrected"),
    Mutant("table-5", BA, 'scipy.stats.false_discovery_control([r["p"] for r in rows])',
           'np.array([r["p"] for r in rows])', nodes(REPORT, "test_paper_tables_reproduce_the_correlations"),
           "the correlations' p-values are Benjamini-Hochberg adjusted"),
    Mutant("table-7", BA, "float(scipy.stats.wilcoxon(t, v).pvalue)",
           'float(scipy.stats.wilcoxon(t, v, alternative="greater").pvalue)', PINNED,
           "two-sided Wilcoxon test"),
    Mutant("table-8", BA, 'sum(r["Average"] > 0 for r in avg)', 'sum(r["Average"] >= 0 for r in avg)',
           nodes(REPORT, "test_a_tie_is_not_an_improvement"), "a tie is not an improvement"),
    Mutant("table-9", BA, 'if info.get(m) and (info[m].base or "all" in against)]', "if info.get(m)]",
           nodes(REPORT, "test_paper_tables_reproduce_the_correlations"),
           "the size correlation over the tuned models"),
    Mutant("table-10", BA, "run & set(PAPER_DATASETS) or run", "run", AVERAGE,
           "Average over the paper's datasets only (Fedorenko2016 left out)"),
    Mutant("table-11", BA, "if run and run <= set(s):", "if run and run & set(s):", AVERAGE,
           "a model has an Average only if it has every averaged dataset"),
    Mutant("table-12", BA,
           'if model_info is None or (dataset == "Average" and not set(PAPER_DATASETS) <= set(scores or '
           '())):', "if model_info is None:", AVERAGE,
           "our Average is compared with the paper's only when all three ran"),
    Mutant("table-13", BA, "ok = np.isfinite(vanilla) & (vanilla > 0)",
           "ok = np.isfinite(vanilla) & (vanilla != 0)",
           nodes(REPORT, "test_a_vanilla_score_at_or_below_zero_gets_no_percentage"),
           "a vanilla score <= 0 gets no percentage (its sign would flip the change)"),
    Mutant("table-14", BA, "if paper is not None and d in scores[m] and not settings.brainscore:",
           "if paper is not None and d in scores[m]:", BRAINSCORE,
           "--brainscore's normalised scores are not set against the paper's raw r"),
    # --- --brainscore: ceiling normalisation
    Mutant("norm-1", BA, "np.clip(v / data.ceiling(part), 0, 1)",
           "np.clip(v / data.ceiling(rec['dataset']), 0, 1)", NORMALISED,
           "normalised per part (Pereira's two ceilings), then averaged"),
    Mutant("norm-2", BA, "np.clip(v / data.ceiling(part), 0, 1)", "v / data.ceiling(part)", NORMALISED,
           "normalised scores clipped to at most 1"),
    Mutant("norm-3", BA, "np.clip(v / data.ceiling(part), 0, 1)", "np.clip(v / data.ceiling(part), -1, 1)",
           NORMALISED, "a negative part normalises to 0"),
    Mutant("norm-4", BA, 'float(np.clip(rec["score"] / ceiling, 0, 1))', 'float(rec["score"] / ceiling)',
           NORMALISED, "normalised behaviour clipped to at most 1"),
    Mutant("norm-5", BA, 'ceiling = rec["ceiling"] if settings.brainscore else 1.0',
           'ceiling = data.ceiling(d) if settings.brainscore else 1.0', NORMALISED,
           "behaviour is divided by the split-half ceiling of the data, not the published .858"),
    # --- records: keyed by what produced them, checked when read
    Mutant("record-1", BA, '"dataset": dataset, "data": src,', '"dataset": dataset,', KEYED,
           "the record key includes the data (its fingerprint, or a hash of the parts in memory)"),
    Mutant("record-2", BA, 'made = {"pipeline": PIPELINE_VERSION, "dataset": dataset,',
           'made = {"dataset": dataset,', KEYED, "the record key includes the pipeline version"),
    Mutant("record-3", BA, "models.identity(info, dtype=settings.dtype, brainscore=settings.brainscore)",
           'models.identity(info, dtype="float32", brainscore=settings.brainscore)', KEYED,
           "the record key includes the model's dtype"),
    Mutant("record-4", BA, '"contents": _hash(repr([vars(p) for p in parts]))}',
           '"contents": _hash(parts[0].name)}', KEYED,
           "data in memory (the demo's) are keyed by their contents"),
    Mutant("record-5", BA, "files=dict(settings.data_files).get(dataset))", "files=None)",
           nodes(RUN, "test_records_of_registered_data_are_keyed_by_its_sha1_without_loading_it"),
           "a file given by hand (--data-file) keys the record by its own sha1"),
    Mutant("record-6", BA, "if found != (key, PIPELINE_VERSION, model, dataset):",
           "if found[:2] != (key, PIPELINE_VERSION):", BAD_RECORD,
           "a record filed under another model or dataset is refused"),
    Mutant("record-7", BA, "type(v) in (int, float) and -1 <= v <= 1", "type(v) in (int, float) and -1 <= v",
           BAD_RECORD, "a score outside [-1, 1] is refused"),
    Mutant("record-8", BA,
           'if rec["parts"] and not 0 <= rec["best_layer"] < len(rec["layer_names"]) == len(rec["layers"]):',
           'if rec["parts"] and not 0 <= rec["best_layer"]:', BAD_RECORD,
           "a best layer out of range is refused"),
    Mutant("record-9", BA, "        os.replace(path, aside)\n", "", BAD_RECORD,
           "a bad record is moved aside (kept for inspection), not overwritten"),
    Mutant("record-10", BA, "if None in records.values():", "if True:",
           nodes(RUN, "test_a_read_only_cache_serves_a_complete_report_and_refuses_new_work"),
           "a complete cache serves the report even where it cannot be written"),
    Mutant("record-11", BA, "[j for j, rec in records.items() if rec is None]", "[j for j, rec in records.items()]",
           nodes(RUN, "test_a_run_scores_records_and_a_rerun_is_the_report"),
           "a rerun over a complete cache computes nothing"),
    Mutant("par-1", BA, "_TASK, jobs = task, min(cores(jobs), n)", "_TASK, jobs = task, 1",
           nodes(PARALLEL, "test_map_keeps_the_order_and_uses_other_processes"),
           "layers are scored on every core, in forked workers"),
    Mutant("par-2", BA, "cost = {j: LAYER_SECONDS.get(j[1], 0.0) * layers[j[0]] / n for j in todo}",
           "cost = {j: LAYER_SECONDS.get(j[1], 0.0) * layers[j[0]] for j in todo}",
           nodes(PARALLEL, "test_a_run_prints_its_projected_cost_first"),
           "the projected wall time divides the CPU time by the cores used"),
    Mutant("par-3", BA, "if STOP.is_set() and threading.current_thread() is not threading.main_thread():",
           "if STOP.is_set():", nodes(PARALLEL, "test_a_failed_run_does_not_stop_later_library_calls"),
           "a Ctrl-C stops run()'s scorer, not later library calls"),
    Mutant("record-12", BA, "settings = Settings(args.brainscore, args.layer_choice,",
           "settings = Settings(False, args.layer_choice,", nodes(CLI, "test_defaults_are_the_papers"),
           "--brainscore reaches the settings"),
    Mutant("record-13", BA, "settings = Settings(args.brainscore, args.layer_choice,",
           'settings = Settings(args.brainscore, "dataset",', nodes(CLI, "test_defaults_are_the_papers"),
           "--layer-choice reaches the settings"),
    Mutant("record-14", BA, "args.device, args.dtype, args.batch_size,", 'args.device, "float32", args.batch_size,',
           SETTINGS, "--dtype reaches the settings (and so the models and the record key)"),
    Mutant("record-15", BA, "args.device, args.dtype, args.batch_size,", "args.device, args.dtype, 8,", SETTINGS,
           "--batch-size reaches the settings"),
    Mutant("record-16", DATA_PY, '"files": {Path(p).name: sha1sum(p) for p in files}',
           '"files": {Path(p).name: None for p in files}', KEYED,
           "a file given by hand is read without its checksum but keyed by its own sha1 (not its name)"),
    # --- data loading and its checks
    Mutant("data-1", DATA_PY, "word_tr=np.searchsorted(trs, onsets) - 1,",
           'word_tr=np.searchsorted(trs, onsets, side="right") - 1,', nodes(DATA, "test_wehbe2014_release"),
           "a word belongs to the last TR starting strictly before it (Toneva & Wehbe)"),
    Mutant("data-2", DATA_PY, "np.flatnonzero(runs == r)[WEHBE_TRIM[0]:-WEHBE_TRIM[1]]",
           "np.flatnonzero(runs == r)[WEHBE_TRIM[1]:-WEHBE_TRIM[0]]", nodes(DATA, "test_wehbe2014_release"),
           "each run keeps TRs [20:-15]"),
    Mutant("data-3", DATA_PY, "(cols := np.flatnonzero(~np.isnan(asm.data[rows]).any(axis=0))).size == 0",
           "(cols := np.flatnonzero(~np.isnan(asm.data[rows]).all(axis=0))).size == 0",
           nodes(DATA, "test_pereira2018_parts"),
           "Pereira2018: a neuroid with any NaN in the experiment is dropped"),
    Mutant("data-4", DATA_PY,
           '    return [_part("Blank2014", read_netcdf(paths[0]), ("stimulus",), ("story",),\n'
           '                  ("subject_id", "subject_UID", "subject"))]',
           '    asm = read_netcdf(paths[0])\n    return [_part("Blank2014", asm, ("stimulus",), ("story",),\n'
           '                  ("subject_id", "subject_UID", "subject"), '
           'np.argsort(asm.coord("stimulus_id")))]',
           nodes(DATA, "test_blank2014_story_order_and_subjects", "test_blank2014_rows_stay_in_stored_order"),
           "Blank2014 rows stay in stored order (Brain-Score's story_indexer), not sorted by stimulus_id"),
    Mutant("data-5", DATA_PY, '("stimulus", "word"), ("sentence_id",)',
           '("word", "stimulus"), ("sentence_id",)',
           nodes(DATA, "test_fedorenko2016_text_from_stimulus_else_word"),
           "Fedorenko2016's text is `stimulus` where the file has it, else `word`"),
    Mutant("data-6", DATA_PY, '("passage_label", "passage_index")', '("passage_index", "passage_label")',
           nodes(DATA, "test_pereira2018_parts"), "Pereira2018's context groups are its passages' labels"),
    Mutant("data-7", DATA_PY, 'stimulus_ids=asm.coord("stimulus_id")[rows])', "stimulus_ids=None)",
           nodes(DATA, "test_pereira2018_parts"), "the stimulus ids (the fit's row order) are loaded"),
    Mutant("data-8", DATA_PY, "if not (bad := ~np.isfinite(y).all(axis=0)).any():", "if True:",
           nodes(DATA, "test_bad_responses_are_named_for_what_they_are"),
           "NaN, inf or float32 overflow is refused"),
    Mutant("data-9", DATA_PY, "if 0 < 10 * trs[-1] < onsets.max() else", "if False else", WEHBE_BAD,
           "word onsets in milliseconds are named as such"),
    Mutant("data-10", DATA_PY, "if np.any(np.diff(onsets) < 0) else", "if False else", WEHBE_BAD,
           "shuffled or reversed word onsets are refused"),
    Mutant("data-11", DATA_PY, "if onsets.min() <= trs[0] or onsets.max() > end else",
           "if onsets.max() > end else", WEHBE_BAD, "word onsets must fall after the first TR's onset"),
    Mutant("data-12", DATA_PY, "if len(values) != WEHBE_N_RUNS or np.any(np.diff(runs) < 0)",
           "if np.any(np.diff(runs) < 0)", WEHBE_BAD, "a runs file with the wrong number of runs is blamed"),
    Mutant("data-13", DATA_PY, "if not np.isfinite(trs).all() or np.any(np.diff(trs) <= 0):",
           "if not np.isfinite(trs).all():", WEHBE_BAD, "TR onsets must increase"),
    Mutant("data-14", DATA_PY, "if read.min() <= 0 else", "if read.min() < 0 else",
           nodes(DATA, "test_futrell2018_reading_times_are_checked_when_loaded"),
           "a reading time of 0 ms is refused"),
    Mutant("data-15", DATA_PY, 'no reading time from any subject" if unread.any() else',
           'no reading time from any subject" if False else',
           nodes(DATA, "test_futrell2018_reading_times_are_checked_when_loaded"),
           "a word nobody read is refused when the file is loaded"),
    Mutant("data-16", DATA_PY, '"checksum": "unpublished" if unpublished else "verified"}',
           '"checksum": "verified"}', nodes(DATA, "test_fingerprint_is_what_load_records"),
           "Wehbe2014 (no published sha1) is never 'verified'"),
    Mutant("data-17", DATA_PY, "if remote.sha1 is None or (got := sha1sum(path)) == remote.sha1:", "if True:",
           nodes(DATA, "test_cached_file_with_wrong_sha1_is_moved_aside",
                 "test_download_wrong_sha1_is_moved_aside"),
           "a file with the wrong sha1 is refused and moved aside"),
    Mutant("data-18", DATA_PY, "if total is not None and out.tell() != total:", "if False:",
           nodes(DATA, "test_interrupted_download_leaves_nothing"), "an interrupted download keeps nothing"),
    Mutant("data-19", DATA_PY, "        os.unlink(tmp)\n        raise", "        raise",
           nodes(DATA, "test_write_atomic_error_leaves_neither_file_nor_temp"),
           "a failed write leaves no temporary file"),
    Mutant("data-20", DATA_PY, "return float(np.mean(list(DATASETS[name].ceilings.values()) or [np.nan]))",
           "return float(np.max(list(DATASETS[name].ceilings.values()) or [np.nan]))",
           nodes(DATA, "test_ceilings_are_the_published_numbers"),
           "a dataset's ceiling is the mean of its parts'"),
    # --- models: readout, token types, T5 decoder inputs, contexts, cache keys
    Mutant("model-1", MODELS_PY, 'post, stacks = not brainscore and config.model_type == "llama",',
           'post, stacks = brainscore and config.model_type == "llama",',
           nodes(MODELS, "test_llama_default_readout_is_post_attention_layernorm"),
           "LLaMA is read at post_attention_layernorm (PR #194), --brainscore at the block output"),
    Mutant("model-2", MODELS_PY, 'token_types = brainscore and "token_type_ids" in tok.model_input_names',
           'token_types = "token_type_ids" in tok.model_input_names',
           nodes(MODELS, "test_token_type_ids_pass_under_brainscore_and_drop_by_default"),
           "token_type_ids dropped by default (PR #194), passed under --brainscore"),
    Mutant("model-3", MODELS_PY, 'layers.append((f"{prefix}embeddings", blocks[0], True))',
           'layers.append((f"{prefix}embeddings", blocks[0], False))', PLAIN_PASS,
           "the embeddings are the first block's input, not its output"),
    Mutant("model-4", MODELS_PY, "decoder_input_ids=ids,", "decoder_input_ids=net._shift_right(ids),",
           nodes(MODELS, "test_matches_a_plain_forward_pass_of_the_context[t5]"),
           "T5's decoder gets the context itself as decoder_input_ids (PR #194), not shifted right"),
    Mutant("model-5", MODELS_PY, "jobs += [(x, [(i, [len(x) - 1])]) for i, x in zip(alone, ids)]",
           "jobs += [(x, [(i, [0])]) for i, x in zip(alone, ids)]", PLAIN_PASS,
           "the representation is the last token"),
    Mutant("model-6", MODELS_PY, "reads += [(i, [len(x) - 1]) for i, x in zip(chain[s:s + 256], ids)",
           "reads += [(i, [len(x) - 2]) for i, x in zip(chain[s:s + 256], ids)",
           nodes(MODELS, "test_one_pass_per_group_equals_one_pass_per_prefix[gpt2]"),
           "one pass per group reads each stimulus at its own last token"),
    Mutant("model-7", MODELS_PY,
           '    if not lm_head or kind == "causal":\n        tok.truncation_side = "left"',
           '    if not lm_head or kind == "causal":\n        tok.truncation_side = "right"',
           nodes(MODELS, "test_truncation_keeps_the_last_tokens[gpt2]"),
           "a context longer than the model is cut on the left (the stimulus is kept)"),
    Mutant("model-8", MODELS_PY, '" ".join(p for p in parts if p.strip())',
           '"".join(p for p in parts if p.strip())', CONTEXT,
           "context texts joined by single spaces (Brain-Score)"),
    Mutant("model-9", MODELS_PY, r'r"\s+([.,!?;:])"', r'r"\s+([.,!?])"', CONTEXT,
           "no space before any of .,!?;:"),
    Mutant("model-10", MODELS_PY, "start = max(0, pos - window + 1) if window else 0",
           "start = max(0, pos - window) if window else 0", CONTEXT,
           "a window of k texts includes the stimulus"),
    Mutant("model-11", MODELS_PY, '(",", \'"\', "@")', '(",", \'"\')', WORD_FEATURES,
           "word features: the tokens , \" @ are dropped (extract_nlp_features' remove_chars)"),
    Mutant("model-12", MODELS_PY, "ids[max(0, i - window + 1):i + 1]", "ids[max(0, i - window):i + 1]",
           WORD_FEATURES, "word i's window is words i-window+1 .. i"),
    Mutant("model-13", MODELS_PY, '"readout": "block" if brainscore else "paper",', '"readout": "paper",',
           IDENTITY, "the cache and record key names the readout"),
    Mutant("model-14", MODELS_PY, 'return {"format": FORMAT, "weights": weights, "dtype": dtype,',
           'return {"format": FORMAT, "weights": weights,', CACHE + IDENTITY,
           "the cache key includes the dtype"),
    Mutant("model-15", MODELS_PY,
           '            digest.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns};".encode())',
           "            pass",
           nodes(MODELS, "test_a_retrained_folder_is_loaded_again_and_not_served_from_the_cache"),
           "a model folder retrained in place gets a new key"),
    Mutant("model-16", MODELS_PY, 'kind="layers", texts=texts, groups=groups, window=window)',
           'kind="layers", texts=texts, window=window)', CACHE,
           "the activation cache key includes the groups"),
    Mutant("model-17", MODELS_PY, 'kind="layers", texts=texts, groups=groups, window=window)',
           'kind="layers", texts=texts, groups=groups)', CACHE,
           "the activation cache key includes the window"),
    Mutant("model-18", MODELS_PY, 'kind="layers", texts=texts, groups=groups, window=window)',
           'kind="layers", texts=len(texts), groups=groups, window=window)', CACHE,
           "the activation cache key includes the texts themselves"),
    Mutant("model-19", MODELS_PY, 'kind="words", texts=words, window=window)', 'kind="words", texts=words)',
           nodes(WEHBE, "test_word_features_cache_window_and_bad_words"),
           "the word-feature key includes the window"),
]

# Mutants that cannot change any result, so no test can kill them: id -> why. Kept here so nobody
# adds them again; not run.
EQUIVALENT = {
    "model-causal-mask": "an attention mask passed to causal models too: padding is on the right and causal "
                         "attention never looks right, so the hidden states read are identical",
    "series-run-floor": "pca_training_words without np.maximum(..., 1) on the run: in the layout it "
                        "reads (every run trimmed by 20 TRs at its start, as data.load_wehbe2014 builds it) "
                        "run 1's first TR is sample_tr[0] - 20 = 0: searchsorted gives every word a run >= 1",
    "record-brainscore": 'record_place without "brainscore" in `made`: models.identity(brainscore=...) '
                         "already changes the key (readout, token_type_ids), so every key stays distinct",
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


def stale(m, root=ROOT):
    return Path(root, m.file).read_text().count(m.original) != 1


def run_mutant(m, workdir, timeout):
    """-> KILLED, SURVIVED, STALE or BROKEN; the file is restored whatever happens."""
    path = Path(workdir, m.file)
    text = path.read_text()
    if text.count(m.original) != 1:
        return "STALE"
    try:
        path.write_text(text.replace(m.original, m.replacement))
        code = pytest(workdir, m.tests, timeout)
    finally:
        path.write_text(text)
    return {0: "SURVIVED", 1: "KILLED", "timeout": "KILLED"}.get(code, "BROKEN")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--check", action="store_true", help="only check that every snippet occurs exactly once")
    p.add_argument("--only", nargs="+", metavar="ID", help="run only these mutants (or ids starting so)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per pytest run")
    args = p.parse_args(argv)
    ids = [m.id for m in MUTANTS]
    assert len(set(ids)) == len(ids), "mutant ids must be unique"
    chosen = [m for m in MUTANTS if not args.only or any(m.id == o or o.endswith("-") and m.id.startswith(o)
                                                         for o in args.only)]
    if args.only and not chosen:
        p.error(f"no mutant matches {' '.join(args.only)}; see --list")
    if args.list:
        for m in MUTANTS:
            print(f"{m.id:11} {m.file:14} {m.breaks}")
        for key, why in EQUIVALENT.items():
            print(f"{key:11} {'equivalent':14} {why}")
        return 0
    if args.check:
        bad = [m.id for m in chosen if stale(m)]
        print(f"{len(chosen) - len(bad)}/{len(chosen)} snippets occur exactly once" +
              (f"; STALE: {' '.join(bad)}" if bad else ""))
        return 1 if bad else 0
    with tempfile.TemporaryDirectory(prefix="brainalign-mutants-") as workdir:
        copy_tree(workdir)
        tests = list(dict.fromkeys(t for m in chosen for t in m.tests))
        print(f"clean copy: {len(tests)} tests", flush=True)
        if pytest(workdir, tests, args.timeout) != 0:
            sys.exit("the tests fail on the unmutated code: fix them first, a kill would mean nothing")
        results = {}
        for m in chosen:
            start = time.time()
            results[m.id] = run_mutant(m, workdir, args.timeout)
            print(f"{results[m.id]:8} {m.id:11} {time.time() - start:5.0f} s  {m.breaks}", flush=True)
    counts = {k: sum(r == k for r in results.values()) for k in ("KILLED", "SURVIVED", "STALE", "BROKEN")}
    for area in dict.fromkeys(i.split("-")[0] for i in results):
        mine = [r for i, r in results.items() if i.split("-")[0] == area]
        print(f"  {area:8} {sum(r == 'KILLED' for r in mine)}/{len(mine)} killed")
    print(f"kill rate: {counts['KILLED']}/{len(results)} killed, {counts['SURVIVED']} survived, "
          f"{counts['STALE']} stale, {counts['BROKEN']} broken; {len(EQUIVALENT)} known equivalent mutants "
          "not run")
    return 1 if counts["SURVIVED"] or counts["STALE"] or counts["BROKEN"] else 0


if __name__ == "__main__":
    sys.exit(main())
