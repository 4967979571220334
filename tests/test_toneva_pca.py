"""Wehbe2014's PCA training words (issue 18): brainalign.pca_training_words against a line-by-line
transcription of Toneva & Wehbe's TR_to_word_CV_ind and CV_ind (github mtoneva/brain_language_nlp
0f519a0 utils/utils.py) on hand-made timings in their layout (each run trimmed by 20 TRs at its start
and 15 at its end), every fold, the first and the last; and a tiny case checked by hand."""
import numpy as np
import pytest

import brainalign as ba
from data import Dataset


def toneva_CV_ind(n, n_folds):
    """CV_ind, line by line."""
    ind = np.zeros((n))
    n_items = int(np.floor(n / n_folds))
    for i in range(0, n_folds - 1):
        ind[i * n_items:(i + 1) * n_items] = i
    ind[(n_folds - 1) * n_items:] = (n_folds - 1)
    return ind


def toneva_TR_to_word_CV_ind(TR_train_indicator, time, runs, time_words, SKIP_WORDS=20, END_WORDS=5176):
    """TR_to_word_CV_ind, line by line; the three np.load calls become arguments."""
    time_words = time_words[SKIP_WORDS:END_WORDS]
    word_train_indicator = np.zeros([len(time_words)], dtype=bool)
    words_id = np.zeros([len(time_words)], dtype=int)
    for i in range(len(time_words)):
        words_id[i] = np.where(time_words[i] > time)[0][-1]
        if words_id[i] <= len(runs) - 15:
            offset = runs[int(words_id[i])] * 20 + (runs[int(words_id[i])] - 1) * 15
            if TR_train_indicator[int(words_id[i]) - offset - 1] == 1:
                word_train_indicator[i] = True
    return word_train_indicator


def series(run_lengths, time_words, first_word, n_folds, gap, tr_seconds=2.0):
    """(Dataset, TR onsets, runs) laid out as Toneva & Wehbe's release: runs of the given lengths, each
    kept as [20:-15]; word i shown in the last TR starting before time_words[i]."""
    runs = np.repeat(np.arange(1, len(run_lengths) + 1), run_lengths)
    time = tr_seconds * np.arange(len(runs))
    kept = np.concatenate([np.flatnonzero(runs == r)[20:-15] for r in np.unique(runs)])
    word_tr = np.array([np.flatnonzero(t > time)[-1] for t in time_words])
    ds = Dataset("toneva-layout", [f"w{i}" for i in range(len(time_words))], ["g"] * len(time_words),
                 np.zeros((len(kept), 1), np.float32), np.array(["s"]), word_tr=word_tr, sample_tr=kept,
                 n_tr=len(runs), first_word=first_word, n_folds=n_folds, gap=gap)
    return ds, time, runs


def toneva_words(ds, time, runs, time_words, fold):
    """The word indices Toneva & Wehbe's code fits the PCA on in outer fold `fold`."""
    ind = toneva_CV_ind(len(ds.sample_tr), ds.n_folds)
    indicator = toneva_TR_to_word_CV_ind(ind != fold, time, runs, time_words, ds.first_word, len(time_words))
    return ds.first_word + np.flatnonzero(indicator)


def test_tiny_case_by_hand():
    # 2 runs of 45 TRs: TRs 20..29 and 65..74 kept (samples 0..9, 10..19); 2 folds of 10 samples, gap 1.
    # Their offset: run 1 -> 20, run 2 -> 55; a word in TR t looks up sample t - offset - 1; TR 76 is past
    # len(runs) - 15 = 75. Words 0, 1 are skipped (first_word 2).
    word_tr = np.array([1, 1, 1, 20, 25, 30, 40, 50, 65, 70, 75, 76])
    ds, time, runs = series([45, 45], 2.0 * word_tr + 1.0, first_word=2, n_folds=2, gap=1)
    np.testing.assert_array_equal(ds.word_tr, word_tr)
    # sample looked up: TR 1 -> -20 (= 0), 20 -> -1 (= 19: the wraparound), 25 -> 4, 30 -> 9 (trimmed TR),
    # 40 -> 19 (trimmed TR, a sample of run 2), 50 -> -6 (= 14), 65 -> 9 (run 1's last sample), 70 -> 14,
    # 75 -> 19, 76 -> never
    expect = {0: [3, 6, 7, 9, 10],           # training samples 10..19 (the gap sample 10 included)
              1: [2, 4, 5, 8]}               # training samples 0..9
    for fold, (train, test) in enumerate(ba.kfold_splits(20, 2, gap=1)):
        np.testing.assert_array_equal(ba.pca_training_words(ds, train), expect[fold])
        np.testing.assert_array_equal(toneva_words(ds, time, runs, 2.0 * word_tr + 1.0, fold), expect[fold])
    # brainalign before issue 18 took the words of the training TRs: fold 0 trains on samples 11..19
    # (TRs 66..74), i.e. word 9 only


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_fold_equals_the_transcription_on_hand_made_timings(seed):
    # 4 runs (kept blocks of 17, 20, 16, 15 TRs), 68 samples, 4 folds of 17, gap 2; 20 skipped words in
    # TR 0, then words at irregular times (empty TRs, several words per TR) and on purpose in TR 3
    # (trimmed, run 1), in TR 20 (the first kept TR: sample 0) and in TR 200 (past len(runs) - 15 = 193)
    rng = np.random.default_rng(seed)
    run_lengths = [52, 55, 51, 50]
    time_words = np.sort(np.r_[np.linspace(0.01, 1.9, 20), rng.uniform(8.0, 2.0 * sum(run_lengths), 500),
                               6.5, 40.5, 41.0, 400.5])
    ds, time, runs = series(run_lengths, time_words, first_word=20, n_folds=4, gap=2)
    in_tr = {t: np.flatnonzero(ds.word_tr == t) for t in (3, 20, 200)}
    assert all(len(w) and w.min() >= 20 for w in in_tr.values())
    for fold, (train, test) in enumerate(ba.kfold_splits(len(ds.sample_tr), 4, gap=2)):
        got = ba.pca_training_words(ds, train)
        np.testing.assert_array_equal(got, toneva_words(ds, time, runs, time_words, fold))
        # sample 0's words look up sample -1 = 67 (the last fold): in the PCA set except in fold 3
        assert np.isin(in_tr[20], got).tolist() == [fold != 3] * len(in_tr[20])
        assert np.isin(in_tr[3], got).tolist() == [fold != 2] * len(in_tr[3])    # 3 - 21 = -18: sample 50
        assert not np.isin(in_tr[200], got).any()
        assert not np.isin(np.arange(20), got).any()


def test_release_layout_first_and_last_fold():
    # the preprocessed release's layout (1,351 TRs in runs of 338, 338, 338, 337; word i at 20 + 0.5 i s,
    # as tests/test_data.py writes it): word 20 falls in TR 14, a trimmed TR of run 1, and looks up sample
    # 14 - 20 - 1 = -7, i.e. 1,204, in the last fold
    time_words = 20.0 + 0.5 * np.arange(5176)
    ds, time, runs = series([338, 338, 338, 337], time_words, first_word=20, n_folds=4, gap=5)
    assert len(ds.sample_tr) == 1211 and ds.word_tr[20] == 14
    splits = ba.kfold_splits(1211, 4, gap=5)
    for fold in (0, 3):
        got = ba.pca_training_words(ds, splits[fold][0])
        np.testing.assert_array_equal(got, toneva_words(ds, time, runs, time_words, fold))
        assert (20 in got) == (fold != 3)


def test_tr_features_fits_pca_on_those_words(monkeypatch):
    rng = np.random.default_rng(0)
    time_words = np.sort(rng.uniform(0.01, 2.0 * 208, size=500))
    ds, time, runs = series([52, 55, 51, 50], time_words, first_word=20, n_folds=4, gap=2)
    feats = rng.normal(size=(500, 6))
    fitted, real = [], ba.top_components
    monkeypatch.setattr(ba, "top_components", lambda x, k: fitted.append(x.copy()) or real(x, k))
    train = ba.kfold_splits(len(ds.sample_tr), 4, gap=2)[1][0]
    ba.tr_features(feats, ds, train, n_components=3)
    np.testing.assert_array_equal(fitted[0], feats[toneva_words(ds, time, runs, time_words, fold=1)])
