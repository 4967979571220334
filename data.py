"""The brain datasets brainalign scores against: downloaded, verified, cached, loaded as numpy arrays.

`DATASETS` (keys = CLI choices) holds every fact about a dataset: files (URLs, sha1), citation, the
published ceiling of each part (the only copy in the project) and its loader. `load(name)` returns the
parts to score and average. Pereira2018 (fMRI, 627 sentences, two parts), Blank2014 (fMRI, 1,317 story
fragments x 60 fROIs) and Fedorenko2016 (ECoG, 416 words x 97 electrodes; not in the paper) are
Brain-Score files; Wehbe2014 (fMRI, Harry Potter ch. 9, 8 subjects) is Toneva & Wehbe's preprocessed
release, placed by hand; Futrell2018 (reading times, 10,256 words x 180 subjects; Brain-Score's file)
is behavioural: one `ReadingTimes`, scored against model surprisal.

How the data are prepared, and the source of each choice:
- Brain-Score files (NetCDF4 = HDF5) are read with h5py: `data` (presentation x neuroid, `_FillValue`
  -> NaN) and one 1-D variable per coordinate (variable-length strings decoded to str).
- Selection as in Brain-Score's benchmarks (brain-score/language, benchmarks/*/benchmark.py):
  Pereira2018: one experiment at a time, neuroids with any NaN in it dropped, context = passage_label.
  Blank2014: context = story. Fedorenko2016: context = sentence_id, text = `stimulus`, else `word`.
- Rows in stored order: Brain-Score's ShuffleSplit(10, train 0.9, random_state=1) runs over them in
  that order and it feeds each passage/story to the model in it. Its fit then sorts each split by
  stimulus_id (1041be4 metrics/linear_predictivity/metric.py `sortby`): `Dataset.stimulus_ids` keeps
  the ids as stored (strings sort as strings, "Boar.10.0" < "Boar.2.0"; integer ids as integers).
  Each group's stored order is checked against its presentation order (Pereira stimulus_num; Blank
  sentence_number_in_story, part_number_in_sentence; Fedorenko word_num); should a file break it, the
  group's rows are sorted within the positions it holds, with a warning (the splits then differ).
- Wehbe2014 as Toneva & Wehbe 2019 (github mtoneva/brain_language_nlp) prepared and scored it, reused
  by Aw & Toneva 2023 (github awwkl/brain_language_summarization): see its section below. Our choices
  where the paper is silent: 20-word windows; all voxels of every subject, labelled F..N.
- Futrell2018 as Brain-Score's benchmark reads it (1041be4 benchmarks/futrell2018/benchmark.py): words
  in stored order (story, then position; one running context), reading times (word x subject, NaN
  where a subject did not read a story), word_within_sentence_id (its 1s are left out of the score).
Left out: xarray, Brain-Score's ceiling estimation (ceilings are the published numbers), ROI masks, and
the raw CMU release of Wehbe2014 (not smoothed, so not the paper's input).
Run: python data.py Fedorenko2016 path/to/assy_Fedorenko2016_language.nc   (or a folder, or no path)
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
from tqdm.auto import tqdm


# --------------------------------------------------------------------------- types

@dataclass(frozen=True)
class Dataset:
    name: str                  # part name: "Pereira2018.243sentences", "Blank2014", "Wehbe2014", ...
    texts: list[str]           # (n_stimuli,) stimulus texts in presentation order
    groups: list[str]          # (n_stimuli,) context group: a model sees the texts of the same group
                               #   up to and including stimulus i (passage / story / sentence / chapter)
    responses: np.ndarray      # (n_samples, n_targets) float32. n_samples == n_stimuli except time series
    subjects: np.ndarray       # (n_targets,) str, subject label per target
    stimulus_ids: np.ndarray | None = None   # (n_stimuli,) Brain-Score's stimulus_id (its fit sorts by it)
    # time series only (Wehbe2014, Toneva & Wehbe's pipeline); None / 0 for Brain-Score's datasets
    word_tr: np.ndarray | None = None    # (n_stimuli,) int: TR (full timeline) in which each word was shown
    sample_tr: np.ndarray | None = None  # (n_samples,) int: index in the full timeline of each response row
    n_tr: int = 0                        # length of the full TR timeline (1,351)
    first_word: int = 0                  # words before this index get no features (20)
    n_folds: int = 0                     # contiguous folds (4)
    gap: int = 0                         # TRs dropped at each train/test boundary (5)
    window: int = 0                      # words per word-feature window (20)
    files: dict = field(default_factory=dict)   # file name -> sha1 of what was read (score records keep it)
    checksum: str = "synthetic"          # "verified" (sha1 as registered), "unpublished" (no sha1 to check),
                                         #   "skipped" (files given by hand, --data-file), "synthetic"


@dataclass(frozen=True)
class ReadingTimes:
    name: str                   # "Futrell2018"
    words: list[str]            # (n_words,) in reading order: story, then position in the story
    stories: np.ndarray         # (n_words,) story of each word
    sentences: np.ndarray       # (n_words,) sentence of each word
    word_in_sentence: np.ndarray  # (n_words,) int, 1 = first word of its sentence
    times: np.ndarray           # (n_words, n_subjects) float64 reading times (ms), NaN = not read
    subjects: np.ndarray        # (n_subjects,) str
    files: dict = field(default_factory=dict)   # as Dataset
    checksum: str = "synthetic"                  # as Dataset


@dataclass(frozen=True)
class Remote:
    name: str               # path inside the data folder
    urls: tuple[str, ...]   # tried in order; () = placed by hand
    sha1: str | None        # None: no published checksum; format and shapes are checked instead
    source: str = ""        # where to get it by hand when there is no URL


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    what: str
    citation: str
    files: tuple[Remote, ...]
    ceilings: dict[str, float]     # part name -> published ceiling: the only copy in the project
    loader: Callable[[list[Path]], list]   # paths (in the order of `files`) -> parts
    unverified: str                # what could not be checked without internet
    behaviour: bool = False        # reading times (ReadingTimes), scored against surprisal


# --------------------------------------------------------------------------- download and verify

class DownloadError(RuntimeError):
    """A dataset file is missing, could not be downloaded, or failed its checksum."""


def data_home(data_dir: str | Path | None = None) -> Path:
    """data_dir, else $BRAINALIGN_DATA, else ~/.cache/brainalign/data."""
    default = Path.home() / ".cache" / "brainalign" / "data"
    path = Path(data_dir if data_dir is not None else os.environ.get("BRAINALIGN_DATA") or default)
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"data dir {path} is a file; give the folder that holds the dataset files "
                         f"(or read the file under its own name with files=[path], --data-file)")
    return path


def sha1sum(path: str | Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _fetch(info: DatasetInfo, folder: Path, download: bool) -> list[Path]:
    """Paths of the dataset's files in folder, each downloaded if missing and checked. Every file
    that cannot be had is named in one error, not one at a time."""
    paths, failed, by_hand = [], [], {}
    for remote in info.files:
        path = folder / remote.name
        if not remote.urls and not path.is_file():
            by_hand.setdefault(remote.source, []).append(f"  {path}")
            continue
        try:
            paths.append(_fetch_file(remote, path, download))
        except DownloadError as err:
            failed.append(str(err))
    failed += [f"missing (no download; put by hand):\n" + "\n".join(missing) + f"\n{source}"
               for source, missing in by_hand.items()]
    if failed:
        raise DownloadError(f"{len(info.files) - len(paths)} of {len(info.files)} file(s) of {info.name} "
                            f"are missing or bad:\n\n" + "\n\n".join(failed) +
                            "\n\n(The data folder is data_dir / --data-dir, else $BRAINALIGN_DATA.)")
    return paths


def _fetch_file(remote: Remote, path: Path, download: bool) -> Path:
    if path.exists():
        _check_sha1(path, remote)
        return path
    if not download:
        raise DownloadError(_by_hand(remote, path, f"{path} does not exist and downloading is off."))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(_by_hand(remote, path, f"{path} is missing and {path.parent} cannot be "
                                                   f"created ({e.strerror}).")) from None
    tried = []
    for url in remote.urls:
        try:
            _download(url, path)
            _check_sha1(path, remote)
            return path
        except (OSError, http.client.HTTPException, DownloadError) as e:
            tried.append(f"  {url}\n    -> {e}")
    raise DownloadError(_by_hand(remote, path, f"could not download {remote.name}:\n" + "\n".join(tried)))


def _download(url: str, path: Path) -> None:
    """Stream url to a temp file next to path, then rename it into place; nothing half-written stays."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=path.name, disable=None) as bar:
                while chunk := response.read(1 << 20):
                    bar.update(out.write(chunk))
            done = out.tell()
        if total is not None and done != total:
            raise DownloadError(f"download interrupted after {done:,} of {total:,} bytes; nothing kept")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _check_sha1(path: Path, remote: Remote) -> None:
    if remote.sha1 is None:
        return
    got = sha1sum(path)
    if got == remote.sha1:
        return
    try:
        moved = f"it was moved aside to {_set_aside(path)} and will not be used"
    except OSError as e:             # a read-only data folder: say what is wrong all the same
        moved = f"it could not be moved aside ({e.strerror}) and will not be used"
    raise DownloadError(f"{path} has sha1 {got}, expected {remote.sha1} (truncated or a different "
                        f"file); {moved}. Run again to download a fresh copy, put the right file "
                        f"at {path}, or, if it is another packaging of the same data, read it "
                        f"without the checksum with --data-file DATASET={path}.")


def _set_aside(path: Path) -> Path:
    """Rename path to the first free name of f.nc.bad, f.nc.2.bad, ...: an earlier copy is never lost."""
    k = 1
    while (bad := path.with_name(path.name + (f".{k}" if k > 1 else "") + ".bad")).exists():
        k += 1
    os.replace(path, bad)
    return bad


def _by_hand(remote: Remote, path: Path, reason: str) -> str:
    sha1 = remote.sha1 or "not published; its format and shapes are checked when it is read"
    urls = "\n".join(f"  {url}" for url in remote.urls)
    return (f"{reason}\nThe file {remote.name} (sha1 {sha1}) can be downloaded by hand from\n{urls}\n"
            f"and put at {path}\n(or in the folder given as data_dir / --data-dir, or the folder "
            f"named by the BRAINALIGN_DATA environment variable).")


# --------------------------------------------------------------------------- NetCDF4 (Brain-Score) reader

@dataclass(frozen=True)
class Assembly:
    path: Path
    data: np.ndarray                               # (n_presentation, n_neuroid) float64, NaN = missing
    dims: tuple[str, str]                          # usually ("presentation", "neuroid")
    coords: dict[str, tuple[str, np.ndarray]]      # name -> (dim, (n,) values)


def read_netcdf(path: str | Path) -> Assembly:
    """A Brain-Score assembly file: `data` plus its 1-D coordinate variables (others are skipped)."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path} is not a NetCDF4/HDF5 file ({e}); delete it and download again") from None
    with f:
        if not isinstance(f.get("data"), h5py.Dataset):
            raise ValueError(f"{path} has no `data` variable (variables: {', '.join(f)})")
        var = f["data"]
        if var.ndim != 2 or var.dtype.kind not in "fiu":
            raise ValueError(f"{path}: `data` must be a 2-D numeric array, got shape {var.shape} "
                             f"and dtype {var.dtype}")
        data = var[()].astype(np.float64)
        fill = np.ravel(var.attrs.get("_FillValue", np.nan)).astype(np.float64)
        if fill.size == 1 and not np.isnan(fill[0]):
            data[data == fill[0]] = np.nan
        dims = _dims(f, var) or ("presentation", "neuroid")
        sizes = dict(zip(dims, data.shape))
        coords = {}
        for name, var in f.items():
            if name == "data" or name in dims or not isinstance(var, h5py.Dataset) or var.ndim != 1:
                continue
            dim = (_dims(f, var) or (None,))[0]
            if dim is None:                       # no DIMENSION_LIST: tell the dimension by length
                matches = [d for d in dims if sizes[d] == var.shape[0]]
                if len(matches) != 1:
                    raise ValueError(f"{path}: cannot tell which dimension coordinate {name!r} "
                                     f"(length {var.shape[0]}) runs along; data is {data.shape}")
                dim = matches[0]
            if sizes.get(dim) != var.shape[0]:
                raise ValueError(f"{path}: coordinate {name!r} has {var.shape[0]} values but "
                                 f"dimension {dim!r} has {sizes.get(dim)}")
            coords[name] = (dim, _values(var))
    return Assembly(path, data, dims, coords)


def _dims(f: h5py.File, var: h5py.Dataset) -> tuple[str, ...] | None:
    try:
        return tuple(f[refs[0]].name.lstrip("/") for refs in var.attrs["DIMENSION_LIST"])
    except (KeyError, ValueError, TypeError, IndexError):
        return None


def _values(var: h5py.Dataset) -> np.ndarray:
    if h5py.check_string_dtype(var.dtype) is not None:
        return np.asarray(var.asstr()[()], dtype=str)
    if var.dtype.kind == "S":
        return np.char.decode(var[()], "utf-8")
    return var[()]


def _coord(asm: Assembly, *names: str, dim: str = "presentation", required: bool = True):
    for name in names:
        if name in asm.coords and asm.coords[name][0] == dim:
            return asm.coords[name][1]
    if not required:
        return None
    have = ", ".join(n for n, (d, _) in asm.coords.items() if d == dim)
    raise ValueError(f"{asm.path}: no coordinate {' or '.join(map(repr, names))} along {dim!r} "
                     f"(found: {have or 'none'})")


def _float32(x: np.ndarray, path: Path, what: str) -> np.ndarray:
    """(n, n_targets) as float32; NaN, inf or a value beyond float32's range is an error naming the file."""
    with np.errstate(over="ignore"):
        y = x.astype(np.float32)
    bad = ~np.isfinite(y).all(axis=0)                                   # (n_targets,)
    if not bad.any():
        return y
    col = x[:, int(np.argmax(bad))].astype(np.float64)
    kind = ("missing (NaN) values" if np.isnan(col).any() else "inf" if np.isinf(col).any() else
            f"values beyond float32's range (up to {np.abs(col).max():.3g}; float32 holds 3.4e38)")
    raise ValueError(f"{path}: {what}: {int(bad.sum())} target(s) hold {kind} (first: column "
                     f"{int(np.argmax(bad))}); the file is not the expected release: fetch it again")


# --------------------------------------------------------------------------- Brain-Score datasets

def _rows_to_dataset(name: str, asm: Assembly, rows: np.ndarray, cols: np.ndarray, texts, groups, keys,
                     subjects) -> Dataset:
    groups = np.asarray(groups[rows]).astype(str)
    keys = [key[rows] for key in keys if key is not None and key.dtype.kind in "iuf"]
    rows = rows[_presentation_order(name, groups, keys)]
    return Dataset(name=name, texts=[str(t) for t in texts[rows]], groups=groups.tolist(),
                   responses=_float32(asm.data[np.ix_(rows, cols)], asm.path, name),  # (n_stimuli, n_targets)
                   subjects=np.asarray(subjects[cols]).astype(str),
                   stimulus_ids=_coord(asm, "stimulus_id")[rows])


def _presentation_order(name: str, groups: np.ndarray, keys: list[np.ndarray]) -> np.ndarray:
    """Permutation that sorts each group's rows by keys within the positions the group holds."""
    order = np.arange(len(groups))
    for group in dict.fromkeys(groups) if keys else ():
        where = np.flatnonzero(groups == group)
        order[where] = where[np.lexsort([key[where] for key in reversed(keys)])]
    if not np.array_equal(order, np.arange(len(groups))):
        warnings.warn(f"{name}: the file does not store each group in presentation order; rows were "
                      f"reordered within each group, so the splits differ from Brain-Score's")
    return order


def load_pereira2018(paths: list[Path]) -> list[Dataset]:
    asm = read_netcdf(paths[0])
    experiment = _coord(asm, "experiment")
    texts, groups = _coord(asm, "stimulus", "sentence"), _coord(asm, "passage_label", "passage_index")
    number = _coord(asm, "stimulus_num", required=False)
    subjects = _coord(asm, "subject", dim="neuroid")
    parts = []
    for exp in ("243sentences", "384sentences"):
        rows = np.flatnonzero(experiment == exp)
        if rows.size == 0:
            raise ValueError(f"{asm.path}: no presentations of experiment {exp!r} "
                             f"(found: {', '.join(sorted(set(map(str, experiment))))})")
        cols = np.flatnonzero(~np.isnan(asm.data[rows]).any(axis=0))   # Brain-Score: dropna('neuroid')
        if cols.size == 0:
            raise ValueError(f"{asm.path}: every neuroid has NaN responses in experiment {exp!r}")
        parts.append(_rows_to_dataset(f"Pereira2018.{exp}", asm, rows, cols, texts, groups, [number],
                                      subjects))
    return parts


def load_blank2014(paths: list[Path]) -> list[Dataset]:
    return _whole_file("Blank2014", read_netcdf(paths[0]), ("stimulus",), "story",
                       ("sentence_number_in_story", "part_number_in_sentence"),
                       ("subject_id", "subject_UID", "subject"))


def load_fedorenko2016(paths: list[Path]) -> list[Dataset]:
    return _whole_file("Fedorenko2016", read_netcdf(paths[0]), ("stimulus", "word"), "sentence_id",
                       ("word_num",), ("subject_UID", "subject_id", "subject"))


def _whole_file(name, asm, text_names, group_name, key_names, subject_names) -> list[Dataset]:
    rows, cols = np.arange(asm.data.shape[0]), np.arange(asm.data.shape[1])
    keys = [_coord(asm, key, required=False) for key in key_names]
    return [_rows_to_dataset(name, asm, rows, cols, _coord(asm, *text_names), _coord(asm, group_name), keys,
                             _coord(asm, *subject_names, dim="neuroid"))]


# --------------------------------------------------------------------------- Wehbe2014 (preprocessed release)
# Toneva & Wehbe's copy (github mtoneva/brain_language_nlp 0f519a0 README.md: "detrended, smoothed,
# and trimmed to remove the first 20TRs and the last 15TRs"), read as their code reads it:
# predict_brain_from_nlp.py np.load('./data/fMRI/data_subject_{}.npy') for subjects F H I J K L M N,
# (1211, n_voxels); utils/utils.py time_fmri.npy (TR onsets, s), runs_fmri.npy (run 1-4 of each TR),
# time_words_fmri.npy (word onsets, s); extract_nlp_features.py data/stimuli_words.npy (the words, in
# their repository). The data folder mirrors their data/. Shapes as awwkl/brain_language_summarization
# f341823 utils/utils.py annotates them: time_fmri (1351,) [0, 2, 4, ...], runs_fmri (1351,) 1..4,
# time_words_fmri (5176,) [20., 20.5, ...], data_subject (1211, ~27905).

WEHBE_N_TR, WEHBE_N_WORDS, WEHBE_N_RUNS, WEHBE_TRIM = 1351, 5176, 4, (20, 15)
WEHBE_SUBJECTS = tuple("FHIJKLMN")
WEHBE_FILES = ("stimuli_words.npy", "fMRI/time_fmri.npy", "fMRI/runs_fmri.npy", "fMRI/time_words_fmri.npy",
               *(f"fMRI/data_subject_{s}.npy" for s in WEHBE_SUBJECTS))


def load_wehbe2014(paths: list[Path]) -> list[Dataset]:
    """paths: the files of WEHBE_FILES, in that order. The responses are used as released (float32;
    the scoring z-scores them per fold)."""
    words_path, tr_path, runs_path, onsets_path, *subject_paths = [Path(p) for p in paths]
    texts = _npy(words_path, "U", (WEHBE_N_WORDS,))
    tr_onsets = _tr_onsets(_npy(tr_path, "fiu", (WEHBE_N_TR,)).astype(np.float64), tr_path)
    kept = _kept_trs(_npy(runs_path, "fiu", (WEHBE_N_TR,)), runs_path)          # (1211,)
    word_onsets = _npy(onsets_path, "fiu", (WEHBE_N_WORDS,)).astype(np.float64)
    word_tr = _word_trs(word_onsets, tr_onsets, onsets_path)                    # (5176,)
    blocks, subjects = [], []
    for label, path in zip(WEHBE_SUBJECTS, subject_paths):
        data = _npy(path, "fiu", (len(kept), None))                              # (1211, n_voxels)
        if data.shape[1] == 0:
            raise ValueError(f"{path} holds no voxels (shape {data.shape}); the release has ~27,905 per "
                             f"subject: fetch the file again")
        blocks.append(_float32(data, path, f"subject {label}"))
        subjects += [label] * data.shape[1]
    return [Dataset(name="Wehbe2014", texts=[str(w) for w in texts], groups=["chapter9"] * len(texts),
                    responses=np.concatenate(blocks, axis=1), subjects=np.asarray(subjects),
                    word_tr=word_tr, sample_tr=kept, n_tr=WEHBE_N_TR,
                    first_word=20,    # extract_nlp_features.py / utils.py: the first 20 words get no features
                    n_folds=4, gap=5,  # utils.py CV_ind, predict_brain_from_nlp.py: 4 folds, 5 TRs apart
                    window=20)]       # our choice (see the module docstring)


def _tr_onsets(onsets: np.ndarray, path: Path) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(onsets) | np.r_[False, ~(np.diff(onsets) > 0)])
    if bad.size:
        raise ValueError(f"{path}: TR onsets must be finite and increasing (seconds), but TR {bad[0]} "
                         f"has onset {onsets[bad[0]]} after {onsets[max(bad[0] - 1, 0)]}: fetch the file again")
    return onsets


def _kept_trs(runs: np.ndarray, path: Path) -> np.ndarray:
    """The timeline rows the subject files hold: each run's TRs [20:-15] (utils.py), (1211,)."""
    values, counts = np.unique(runs, return_counts=True)
    if len(values) != WEHBE_N_RUNS or not np.isfinite(runs).all() or np.any(np.diff(runs) < 0) \
            or counts.min() <= sum(WEHBE_TRIM):
        raise ValueError(f"{path}: the runs file must give the run of each TR, {WEHBE_N_RUNS} runs in "
                         f"contiguous increasing blocks of more than {sum(WEHBE_TRIM)} TRs; found "
                         f"{len(values)} run(s) ({', '.join(map(str, values[:6]))}) of "
                         f"{', '.join(map(str, counts[:6]))} TRs: fetch the file again")
    return np.concatenate([np.flatnonzero(runs == r)[WEHBE_TRIM[0]:-WEHBE_TRIM[1]] for r in values])


def _word_trs(onsets: np.ndarray, tr_onsets: np.ndarray, path: Path) -> np.ndarray:
    """The TR of each word: the last TR starting strictly before its onset (utils.py), (n_words,)."""
    end = tr_onsets[-1] + np.median(np.diff(tr_onsets))          # the end of the last TR
    problem = (
        f"word {np.argmax(~np.isfinite(onsets))} has onset {onsets[np.argmax(~np.isfinite(onsets))]}"
        if not np.isfinite(onsets).all() else
        f"they look like milliseconds (last word at {onsets.max():g}, last TR at {tr_onsets[-1]:g} s): "
        f"divide by 1000" if tr_onsets[-1] > 0 and onsets.max() > 10 * tr_onsets[-1] else
        f"word {np.argmax(np.diff(onsets) < 0) + 1} starts before the word before it"
        if np.any(np.diff(onsets) < 0) else
        f"words lie outside the TR timeline ({tr_onsets[0]:g} to {end:g} s): first at {onsets.min():g} s, "
        f"last at {onsets.max():g} s" if onsets.min() <= tr_onsets[0] or onsets.max() > end else None)
    if problem:
        raise ValueError(f"{path}: word onsets must be finite, non-decreasing seconds within the TRs of "
                         f"time_fmri.npy; {problem}")
    return np.searchsorted(tr_onsets, onsets, side="left") - 1


def _npy(path: Path, kinds: str, shape: tuple) -> np.ndarray:
    """np.load without pickles, its dtype kind in kinds and its shape (None = any length) checked."""
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise ValueError(f"{path} is not a readable .npy file (no .npy header); fetch it again")
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise ValueError(f"{path} holds Python objects (a pickled array); brainalign never loads "
                             f"pickles: re-save it as a plain numeric or string array") from None
        raise ValueError(f"{path} is not a readable .npy file ({e})") from None
    except (OSError, EOFError) as e:
        raise ValueError(f"{path} is not a readable .npy file ({e})") from None
    if x.dtype.kind not in kinds or x.ndim != len(shape) or any(
            want is not None and got != want for got, want in zip(x.shape, shape)):
        raise ValueError(f"{path}: expected an array of shape {shape} (None: any length) and dtype "
                         f"kind {kinds!r} (f float, i/u integer, U text), got shape {x.shape} and "
                         f"dtype {x.dtype}")
    return x


# --------------------------------------------------------------------------- Futrell2018 (behavioural)

def load_futrell2018(paths: list[Path]) -> list[ReadingTimes]:
    """Brain-Score's Futrell2018 assembly: words x subjects of reading times, in stored order."""
    asm = read_netcdf(paths[0])
    word_in_sentence = _coord(asm, "word_within_sentence_id")
    if word_in_sentence.dtype.kind not in "iu":
        raise ValueError(f"{asm.path}: word_within_sentence_id must be integers, got {word_in_sentence.dtype}")
    stories = _coord(asm, "story_id", "story")
    _check_reading_times(asm.data, stories, asm.path)
    return [ReadingTimes(name="Futrell2018", words=[str(w) for w in _coord(asm, "word")], stories=stories,
                         sentences=_coord(asm, "sentence_id"), word_in_sentence=word_in_sentence,
                         times=asm.data, subjects=_coord(asm, "subject_id", dim=asm.dims[1]).astype(str))]


def _check_reading_times(times: np.ndarray, stories: np.ndarray, path: Path) -> None:
    """times: (n_words, n_subjects) ms, NaN = not read. Checked before any model runs."""
    unread = np.isnan(times).all(axis=1)                        # its mean over subjects would be NaN
    read = times[~np.isnan(times)]
    problem = (
        f"{int(unread.sum())} words (story {', '.join(map(str, dict.fromkeys(stories[unread].tolist())))}) "
        f"have no reading time from any subject" if unread.any() else
        f"{int(np.isinf(read).sum())} reading time(s) are inf" if np.isinf(read).any() else
        f"{int((read <= 0).sum())} reading time(s) are zero or negative (min {read.min():g})"
        if np.any(read <= 0) else
        f"reading times up to {read.max():.3g} overflow float32 (3.4e38)"
        if read.max() > np.finfo(np.float32).max else
        f"every reading time is {read[0]:g}, so none can be predicted" if read.min() == read.max() else None)
    if problem:
        raise ValueError(f"{path}: {problem}; reading times are positive milliseconds: the file is not the "
                         f"expected release, delete it and download again")


# --------------------------------------------------------------------------- registry

_BS_NOW = "https://brainscore-storage.s3.amazonaws.com/brainscore-language/"  # since March 2026
_BS_OLD = "https://brainscore-language.s3.amazonaws.com/"                     # Brain-Score <= 2.2.1


def _brainscore_file(identifier: str, sha1: str, version_id: str) -> tuple[Remote]:
    name = "assy_" + identifier.replace(".", "_") + ".nc"
    return (Remote(name, (_BS_NOW + name, f"{_BS_OLD}{name}?versionId={version_id}"), sha1),)


_TONEVA = "github.com/mtoneva/brain_language_nlp (Toneva & Wehbe's code, commit 0f519a0)"
_WEHBE_WORDS = f"stimuli_words.npy is in the data/ folder of {_TONEVA}."
_WEHBE_FMRI = (f"The fMRI/ files are Toneva & Wehbe's preprocessed release, linked as 'preprocessed data "
               f"here' from the README of {_TONEVA}; put its fMRI/ folder in the data folder.")
_BRAINSCORE = ("Schrimpf et al. 2021, The neural architecture of language: Integrative modeling "
               "converges on predictive processing, PNAS 118(45):e2105646118")
# Ceilings: Brain-Score's published values (Pereira's two parts, Blank2014, Futrell2018) and the
# paper's Table 6 (Wehbe2014); none is published for Fedorenko2016 (Brain-Score estimates it at run time).
DATASETS: dict[str, DatasetInfo] = {
    "Pereira2018": DatasetInfo(
        "Pereira2018", "fMRI, 627 sentences (243 + 384, two experiments), 10 subjects", (
            "Pereira et al. 2018, Toward a universal decoder of linguistic meaning from brain "
            "activation, Nature Communications 9:963; packaged by " + _BRAINSCORE),
        _brainscore_file("Pereira2018.language", "f8434b4022f5b2c862f0ff2854d5b3f5f2a7fb96",
                         "fq0gh.P7ThLu6DWUulho5W_F.YTEhDqJ"),
        {"Pereira2018.243sentences": 0.35378928, "Pereira2018.384sentences": 0.36343748},
        load_pereira2018, "URLs and sha1 (taken from Brain-Score's source, not downloaded here)"),
    "Blank2014": DatasetInfo(
        "Blank2014", "fMRI, 1,317 story fragments (one per TR) x 60 language fROIs, 5 subjects", (
            "Blank, Kanwisher & Fedorenko 2014, A functional dissociation between language and "
            "multiple-demand systems revealed in patterns of BOLD signal fluctuations, "
            "J Neurophysiol 112(5):1105-1118; packaged by " + _BRAINSCORE),
        _brainscore_file("Blank2014.fROI", "af1e868821b897cb1684e4c8dcd33977121ef552",
                         "qM.uLV8ltOHM297r2SaGteYMX4Vy.oHB"),
        {"Blank2014": 0.21026591}, load_blank2014,
        "URLs and sha1; that the file stores each story in presentation order"),
    "Wehbe2014": DatasetInfo(
        "Wehbe2014", "fMRI, Harry Potter ch. 9 (5,176 words, 0.5 s each), 1,211 TRs kept, 8 subjects", (
            "Wehbe et al. 2014, Simultaneously uncovering the patterns of brain regions involved in "
            "different story reading subprocesses, PLoS ONE 9(11):e112575; preprocessed release and "
            "pipeline of Toneva & Wehbe 2019, Interpreting and improving natural-language processing "
            "(in machines) with natural language-processing (in the brain), NeurIPS"),
        tuple(Remote(name, (), None, _WEHBE_WORDS if name == WEHBE_FILES[0] else _WEHBE_FMRI)
              for name in WEHBE_FILES),
        {"Wehbe2014": 0.104}, load_wehbe2014,
        "no sha1 is published (format, shapes and timings are checked instead, and the sha1 of what "
        "was read is recorded); the file layout, from Toneva & Wehbe's code"),
    "Fedorenko2016": DatasetInfo(
        "Fedorenko2016", "ECoG, 416 words (52 sentences x 8) x 97 electrodes, 5 subjects", (
            "Fedorenko et al. 2016, Neural correlate of the construction of sentence meaning, "
            "PNAS 113(41):E6256-E6262; packaged by " + _BRAINSCORE),
        _brainscore_file("Fedorenko2016.language", "2966b6d78e972a72068aa6907377483f427e8d9a",
                         "qvB7YZfEjbXEE64bODNLlQlZKWGpgPhy"),
        {}, load_fedorenko2016, "URLs and sha1; no ceiling is published"),
    "Futrell2018": DatasetInfo(
        "Futrell2018", "self-paced reading times, 10,256 words of 10 Natural Stories x 180 subjects", (
            "Futrell et al. 2018, The Natural Stories Corpus, LREC; packaged by " + _BRAINSCORE),
        _brainscore_file("Futrell2018", "381ccc8038fbdb31235b5f3e1d350f359b5e287f",
                         "MpR.gIXN8UrUnqwQyj.kCrh4VWrBvsGf"),
        {"Futrell2018": 0.858}, load_futrell2018,
        "URLs and sha1; the ceiling .858 (Brain-Score's test value; recomputed from the file)", behaviour=True),
}


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


def ceiling(name: str) -> float:
    """A part's published ceiling; for a dataset, the mean over its parts (Pereira2018: .359, the
    paper's Table 6); NaN where none is published."""
    if name in DATASETS:
        values = list(DATASETS[name].ceilings.values())
        return float(np.mean(values)) if values else float("nan")
    for info in DATASETS.values():
        if name in info.ceilings:
            return info.ceilings[name]
    parts = [part for info in DATASETS.values() for part in info.ceilings]
    raise ValueError(f"unknown dataset or part {name!r}; choose one of: {', '.join(dict.fromkeys([*DATASETS, *parts]))}")


# --------------------------------------------------------------------------- entry points

def load(name: str, data_dir: str | Path | None = None, *, files: list[str | Path] | None = None,
         download: bool = True) -> list[Dataset] | list[ReadingTimes]:
    """The dataset's parts to score separately and average (Pereira2018: 243sentences, 384sentences).
    files: paths given by hand (--data-file), in the order of DATASETS[name].files, read under any
    name without the checksum. Each part records the sha1 of every file (see fingerprint)."""
    info = _info(name)
    paths = _given(info, files) if files is not None else _fetch(info, data_home(data_dir), download)
    stamp = fingerprint(name, data_dir, files=files)
    return [replace(part, files=stamp["files"], checksum=stamp["checksum"]) for part in info.loader(paths)]


def fingerprint(name: str, data_dir: str | Path | None = None, *, files: list[str | Path] | None = None) -> dict:
    """{"files": {file name: sha1}, "checksum": ...} of what load() reads, without downloading or parsing:
    registered sha1s as registered ("verified": load checks them); files given by hand, their sha1
    ("skipped"); files without a published sha1 (Wehbe2014), the sha1 of those in the data folder
    ("unpublished"; DownloadError naming every missing file)."""
    info = _info(name)
    if files is not None:
        return {"files": {p.name: sha1sum(p) for p in _given(info, files)}, "checksum": "skipped"}
    folder = data_home(data_dir)
    unpublished = tuple(r for r in info.files if r.sha1 is None)
    _fetch(replace(info, files=unpublished), folder, download=False)     # names every missing file
    return {"files": {Path(r.name).name: r.sha1 or sha1sum(folder / r.name) for r in info.files},
            "checksum": "unpublished" if unpublished else "verified"}


def _given(info: DatasetInfo, files: list[str | Path]) -> list[Path]:
    paths = [Path(p) for p in ([files] if isinstance(files, (str, Path)) else files)]
    if len(paths) != len(info.files):
        raise ValueError(f"{info.name} needs {len(info.files)} file(s) "
                         f"({', '.join(r.name for r in info.files)}), got {len(paths)}")
    for path in paths:
        if not path.is_file():
            raise ValueError(f"{path} is not a file; give the dataset's file(s) in the order listed")
    return paths


def main(argv: list[str]) -> None:
    """python data.py NAME [FOLDER | FILE ...]: download (or read) a dataset and describe it."""
    if not argv or argv[0] not in DATASETS:
        sys.exit(f"usage: python data.py {{{','.join(DATASETS)}}} [FOLDER | FILE ...]")
    name, where = argv[0], argv[1:]
    by_hand = bool(where) and Path(where[0]).is_file()
    try:
        parts = load(name, None if by_hand or not where else where[0], files=where if by_hand else None)
    except (ValueError, OSError, DownloadError) as err:
        sys.exit(f"data.py: {err}")
    for d in parts:
        if isinstance(d, ReadingTimes):
            print(f"{d.name}: {len(d.words)} words, {len(set(d.stories.tolist()))} stories, reading times "
                  f"{d.times.shape}, {int(np.isnan(d.times).sum())} missing, checksum {d.checksum}")
        else:
            print(f"{d.name}: {len(d.texts)} stimuli, {len(set(d.groups))} groups, responses "
                  f"{d.responses.shape}, {len(set(d.subjects))} subjects, ceiling {ceiling(d.name)}, "
                  f"checksum {d.checksum}")


if __name__ == "__main__":
    main(sys.argv[1:])
