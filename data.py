"""The brain datasets brainalign scores against: downloaded, verified, cached, loaded as numpy arrays.

`DATASETS` (keys = CLI choices) holds every fact about a dataset: files (URLs, sha1), citation, the
published ceiling of each part (the only copy in the project) and its loader; `load(name)` returns the
parts to score and average. Pereira2018 (fMRI, 627 sentences, two parts), Blank2014 (fMRI, 1,317 story
fragments x 60 fROIs) and Fedorenko2016 (ECoG, 416 words x 97 electrodes; not in the paper) are
Brain-Score files; Wehbe2014 (fMRI, Harry Potter ch. 9, 8 subjects) is Toneva & Wehbe's preprocessed
release, placed by hand; Futrell2018 (reading times, 10,256 words x 180 subjects; Brain-Score's file)
is behavioural: one `ReadingTimes`, scored against model surprisal.

How the data are prepared, and the source of each choice:
- Brain-Score's NetCDF4 (HDF5) files are read with h5py. Selection as in its benchmarks/*/benchmark.py:
  Pereira2018 one experiment at a time, neuroids with any NaN in it dropped, context = passage_label;
  Blank2014 context = story; Fedorenko2016 context = sentence_id, text = `stimulus`, else `word`.
- Rows in stored order: Brain-Score's ShuffleSplit(10, train 0.9, random_state=1) runs over them in
  that order and it feeds each passage/story to the model in it. Its fit sorts each split by
  stimulus_id (1041be4 metrics/linear_predictivity/metric.py `sortby`), so `Dataset.stimulus_ids`
  keeps the ids as stored (strings sort as strings, "Boar.10.0" < "Boar.2.0"; integers as integers).
  A group stored out of presentation order (Pereira stimulus_num; Blank sentence_number_in_story,
  part_number_in_sentence; Fedorenko word_num) is sorted within its positions, with a warning.
- Wehbe2014 and Futrell2018: see their sections. Our choices where the paper is silent: Wehbe2014's
  20-word windows and all voxels of every subject.
Left out: xarray, Brain-Score's ceiling estimation (ceilings are the published numbers), ROI masks,
and the raw CMU release of Wehbe2014 (not smoothed, so not the paper's input).
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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm


# --------------------------------------------------------------------------- types

@dataclass(frozen=True)
class Dataset:
    name: str                  # part name: "Pereira2018.243sentences", "Blank2014", "Wehbe2014", ...
    texts: list[str]           # (n_stimuli,) stimulus texts in presentation order
    groups: list[str]          # (n_stimuli,) context: a model sees its group's texts up to stimulus i
    responses: np.ndarray      # (n_samples, n_targets) float32. n_samples == n_stimuli except time series
    subjects: np.ndarray       # (n_targets,) str, subject label per target
    stimulus_ids: np.ndarray | None = None  # (n_stimuli,) Brain-Score's stimulus_id (its fit sorts by it)
    # time series only (Wehbe2014, Toneva & Wehbe's pipeline); None / 0 for Brain-Score's datasets
    word_tr: np.ndarray | None = None    # (n_stimuli,) int: TR (full timeline) in which each word was shown
    sample_tr: np.ndarray | None = None  # (n_samples,) int: index in the full timeline of each response row
    n_tr: int = 0                        # length of the full TR timeline (1,351)
    first_word: int = 0                  # words before this index get no features (20)
    n_folds: int = 0                     # contiguous folds (4)
    gap: int = 0                         # TRs dropped at each train/test boundary (5)
    window: int = 0                      # words per word-feature window (20)
    files: dict = field(default_factory=dict)   # file name -> sha1 of what was read (score records keep it)
    checksum: str = "synthetic"  # "verified" (sha1 as registered), "unpublished" (no sha1 published),
                                 # "skipped" (files given by hand, --data-file), "synthetic"


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
    ceilings: dict[str, float]             # part name -> published ceiling (none published: {})
    loader: Callable[[list[Path]], list]   # paths, in the order of files -> parts
    unverified: str                        # what could not be checked without internet
    behaviour: bool = False                # reading times, scored against surprisal


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
    """The dataset's files in folder, each downloaded if missing and checked; one error names them all."""
    paths, failed, by_hand = [], [], {}
    for remote in info.files:
        try:
            if remote.urls or (folder / remote.name).is_file():
                paths.append(_fetch_file(remote, folder / remote.name, download))
            else:                                         # listed together, by where to get them
                by_hand.setdefault(remote.source, []).append(f"  {folder / remote.name}")
        except DownloadError as err:
            failed.append(str(err))
    failed += ["\n".join(["missing (put by hand):", *names, where]) for where, names in by_hand.items()]
    if failed:
        raise DownloadError(f"{len(info.files) - len(paths)} of {len(info.files)} file(s) of {info.name} are "
                            "missing or bad:\n\n" + "\n\n".join(failed))
    return paths


def _fetch_file(remote: Remote, path: Path, download: bool) -> Path:
    if path.exists():
        _check_sha1(path, remote)
        return path
    tried = [] if download else [f"{path} does not exist and downloading is off."]
    for url in remote.urls if download else ():
        try:
            _download(url, path)
            _check_sha1(path, remote)
            return path
        except (OSError, http.client.HTTPException, DownloadError) as e:
            tried.append(f"could not download {remote.name} from {url}\n    -> {e}")
    urls = "".join(f"\n  {url}" for url in remote.urls)
    raise DownloadError("\n".join(tried) + f"\nThe file {remote.name} (sha1 {remote.sha1}) can be downloaded "
                        f"by hand from{urls}\nand put at {path} (or in the folder given as data_dir / "
                        f"--data-dir, or named by the BRAINALIGN_DATA environment variable).")


def _download(url: str, path: Path) -> None:
    """Stream url to a temp file next to path, then rename it into place; nothing half-written stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
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
    """A file that is not the registered one is refused and moved aside to the first free name of
    f.nc.bad, f.nc.2.bad, ...: an earlier copy is never overwritten."""
    if remote.sha1 is None or (got := sha1sum(path)) == remote.sha1:
        return
    k = 1
    while (bad := path.with_name(path.name + (f".{k}" if k > 1 else "") + ".bad")).exists():
        k += 1
    try:
        os.replace(path, bad)
        moved = f"it was moved aside to {bad} and will not be used"
    except OSError as e:             # a read-only data folder: say what is wrong all the same
        moved = f"it could not be moved aside ({e.strerror}) and will not be used"
    raise DownloadError(f"{path} has sha1 {got}, expected {remote.sha1} (truncated or a different file); "
                        f"{moved}. Run again to download a fresh copy, put the right file at {path}, or "
                        f"read another packaging of the same data without the checksum: --data-file "
                        f"DATASET={path}.")


# --------------------------------------------------------------------------- NetCDF4 (Brain-Score) reader

@dataclass(frozen=True)
class Assembly:
    path: Path
    data: np.ndarray                               # (n_presentation, n_neuroid) float64, NaN = missing
    dims: tuple[str, str]                          # usually ("presentation", "neuroid")
    coords: dict[str, tuple[str, np.ndarray]]      # name -> (dim, (n,) values)


def read_netcdf(path: str | Path) -> Assembly:
    """A Brain-Score assembly: `data` (`_FillValue` -> NaN) and its 1-D coordinates (strings as str)."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path} is not a NetCDF4/HDF5 file ({e}); delete it and download again") from None
    with f:
        if not isinstance(var := f.get("data"), h5py.Dataset):
            raise ValueError(f"{path} has no `data` variable (variables: {', '.join(f)})")
        if var.ndim != 2 or var.dtype.kind not in "fiu":
            raise ValueError(f"{path}: `data` must be a 2-D numeric array, got shape {var.shape} "
                             f"and dtype {var.dtype}")
        data = var[()].astype(np.float64)
        fill = np.ravel(var.attrs.get("_FillValue", np.nan)).astype(np.float64)
        if fill.size == 1 and not np.isnan(fill[0]):
            data[data == fill[0]] = np.nan
        dims = _dims(f, var) or ("presentation", "neuroid")
        sizes, coords = dict(zip(dims, data.shape)), {}
        for name, var in f.items():
            if name == "data" or name in dims or not isinstance(var, h5py.Dataset) or var.ndim != 1:
                continue
            listed = _dims(f, var)          # its DIMENSION_LIST, else the one dimension of the same length
            dim = [d for d in (listed[:1] if listed else dims) if sizes.get(d) == var.shape[0]]
            if len(dim) != 1:
                raise ValueError(f"{path}: coordinate {name!r} (length {var.shape[0]}) fits no single "
                                 f"dimension of `data` {sizes} (its DIMENSION_LIST: {listed})")
            text = h5py.check_string_dtype(var.dtype) is not None
            coords[name] = (dim[0], np.asarray(var.asstr()[()], dtype=str) if text else
                            np.char.decode(var[()], "utf-8") if var.dtype.kind == "S" else var[()])
    return Assembly(path, data, dims, coords)


def _dims(f: h5py.File, var: h5py.Dataset) -> tuple[str, ...] | None:
    try:
        return tuple(f[refs[0]].name.lstrip("/") for refs in var.attrs["DIMENSION_LIST"])
    except (KeyError, ValueError, TypeError, IndexError):
        return None


def _coord(asm: Assembly, *names: str, dim: str = "presentation", required: bool = True):
    """The first of the named coordinates along dim (None if none is there and it is not required)."""
    for name in names:
        if name in asm.coords and asm.coords[name][0] == dim:
            return asm.coords[name][1]
    if required:
        have = ", ".join(n for n, (d, _) in asm.coords.items() if d == dim)
        raise ValueError(f"{asm.path}: no coordinate {' or '.join(map(repr, names))} along {dim!r} "
                         f"(found: {have or 'none'})")


def _float32(x: np.ndarray, path: Path, what: str) -> np.ndarray:
    """(n, n_targets) as float32; NaN, inf or a value beyond float32's range is an error naming the file."""
    with np.errstate(over="ignore"):
        y = x.astype(np.float32)
    if not (bad := ~np.isfinite(y).all(axis=0)).any():                      # (n_targets,)
        return y
    col = x[:, np.argmax(bad)].astype(np.float64)
    kind = ("missing (NaN) values" if np.isnan(col).any() else "inf" if np.isinf(col).any() else
            f"values beyond float32's range (up to {np.abs(col).max():.3g}; float32 holds 3.4e38)")
    raise ValueError(f"{path}: {what}: {bad.sum()} target(s) hold {kind} (first: column {np.argmax(bad)}); "
                     "the file is not the expected release: fetch it again")


# --------------------------------------------------------------------------- Brain-Score datasets

def _rows_to_dataset(name: str, asm: Assembly, rows: np.ndarray, cols: np.ndarray, texts: tuple[str, ...],
                     groups: tuple[str, ...], keys: tuple[str, ...], subjects: tuple[str, ...]) -> Dataset:
    """The part in rows x cols; the rest name coordinates (keys: the presentation order within a group)."""
    groups = _coord(asm, *groups)[rows].astype(str)
    keys = [k[rows] for k in (_coord(asm, key, required=False) for key in keys)
            if k is not None and k.dtype.kind in "iuf"]
    rows = rows[_presentation_order(name, groups, keys)]
    return Dataset(name=name, texts=[str(t) for t in _coord(asm, *texts)[rows]], groups=groups.tolist(),
                   responses=_float32(asm.data[np.ix_(rows, cols)], asm.path, name),  # (n_stimuli, n_targets)
                   subjects=_coord(asm, *subjects, dim="neuroid")[cols].astype(str),
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
    experiment, parts = _coord(asm, "experiment"), []
    for exp in ("243sentences", "384sentences"):
        if (rows := np.flatnonzero(experiment == exp)).size == 0:
            raise ValueError(f"{asm.path}: no presentations of experiment {exp!r} "
                             f"(found: {', '.join(sorted(set(map(str, experiment))))})")
        cols = np.flatnonzero(~np.isnan(asm.data[rows]).any(axis=0))   # Brain-Score: dropna('neuroid')
        if cols.size == 0:
            raise ValueError(f"{asm.path}: every neuroid has NaN responses in experiment {exp!r}")
        parts.append(_rows_to_dataset(f"Pereira2018.{exp}", asm, rows, cols, ("stimulus", "sentence"),
                                      ("passage_label", "passage_index"), ("stimulus_num",), ("subject",)))
    return parts


def load_blank2014(paths: list[Path]) -> list[Dataset]:
    asm = read_netcdf(paths[0])
    return [_rows_to_dataset("Blank2014", asm, *map(np.arange, asm.data.shape), ("stimulus",), ("story",),
                             ("sentence_number_in_story", "part_number_in_sentence"),
                             ("subject_id", "subject_UID", "subject"))]


def load_fedorenko2016(paths: list[Path]) -> list[Dataset]:
    asm = read_netcdf(paths[0])
    return [_rows_to_dataset("Fedorenko2016", asm, *map(np.arange, asm.data.shape), ("stimulus", "word"),
                             ("sentence_id",), ("word_num",), ("subject_UID", "subject_id", "subject"))]


# --------------------------------------------------------------------------- Wehbe2014 (preprocessed release)
# Toneva & Wehbe 2019's copy (github mtoneva/brain_language_nlp 0f519a0 README.md: "detrended, smoothed, and
# trimmed to remove the first 20TRs and the last 15TRs"), as Aw & Toneva 2023 reuse it, read as their code
# reads it: predict_brain_from_nlp.py np.load('./data/fMRI/data_subject_{}.npy'), subjects F H I J K L M N;
# utils/utils.py time_fmri.npy, runs_fmri.npy, time_words_fmri.npy; extract_nlp_features.py
# data/stimuli_words.npy (in their repository). The data folder mirrors their data/. Shapes as
# awwkl/brain_language_summarization f341823 utils/utils.py annotates them: time_fmri (1351,) [0, 2, 4, ...],
# runs_fmri (1351,) 1..4, time_words_fmri (5176,) [20., 20.5, ...], data_subject (1211, ~27905).
WEHBE_N_TR, WEHBE_N_WORDS, WEHBE_N_RUNS, WEHBE_TRIM = 1351, 5176, 4, (20, 15)
WEHBE_SUBJECTS = tuple("FHIJKLMN")
WEHBE_FILES = ("stimuli_words.npy", "fMRI/time_fmri.npy", "fMRI/runs_fmri.npy", "fMRI/time_words_fmri.npy",
               *(f"fMRI/data_subject_{s}.npy" for s in WEHBE_SUBJECTS))


def load_wehbe2014(paths: list[Path]) -> list[Dataset]:
    """paths: WEHBE_FILES, in order. Responses as released; words 0..19 get no features (utils.py); 4
    contiguous folds, 5 TRs dropped at each train/test boundary (utils.py CV_ind); 20-word windows (ours)."""
    words, tr_path, runs_path, onsets_path, *subject_paths = map(Path, paths)
    texts = [str(w) for w in _npy(words, "U", (WEHBE_N_WORDS,))]
    tr_onsets = _npy(tr_path, "fiu", (WEHBE_N_TR,)).astype(np.float64)
    if not np.isfinite(tr_onsets).all() or np.any(np.diff(tr_onsets) <= 0):
        raise ValueError(f"{tr_path}: TR onsets must be finite and increasing seconds; fetch the file again")
    runs = _npy(runs_path, "fiu", (WEHBE_N_TR,))
    values, counts = np.unique(runs, return_counts=True)
    if len(values) != WEHBE_N_RUNS or np.any(np.diff(runs) < 0) or counts.min() <= sum(WEHBE_TRIM):
        raise ValueError(f"{runs_path}: the runs file must give the run of each TR, {WEHBE_N_RUNS} runs in "
                         f"contiguous increasing blocks of more than {sum(WEHBE_TRIM)} TRs; found "
                         f"{len(values)} run(s) of {', '.join(map(str, counts[:6]))} TRs; fetch it again")
    kept = np.concatenate([np.flatnonzero(runs == r)[WEHBE_TRIM[0]:-WEHBE_TRIM[1]] for r in values])  # 1211
    word_tr = _word_trs(_npy(onsets_path, "fiu", (WEHBE_N_WORDS,)).astype(np.float64), tr_onsets, onsets_path)
    blocks = [_npy(path, "fiu", (len(kept), None)) for path in subject_paths]    # (1211, n_voxels) each
    for path, block in zip(subject_paths, blocks):
        if block.shape[1] == 0:
            raise ValueError(f"{path} holds no voxels (shape {block.shape}): fetch the file again")
    return [Dataset(name="Wehbe2014", texts=texts, groups=["chapter9"] * len(texts),
                    responses=np.hstack([_float32(b, p, "voxels") for b, p in zip(blocks, subject_paths)]),
                    subjects=np.repeat(WEHBE_SUBJECTS, [b.shape[1] for b in blocks]), word_tr=word_tr,
                    sample_tr=kept, n_tr=WEHBE_N_TR, first_word=20, n_folds=4, gap=5, window=20)]


def _word_trs(onsets: np.ndarray, tr_onsets: np.ndarray, path: Path) -> np.ndarray:
    """The TR of each word: the last TR starting strictly before its onset (utils.py), (n_words,)."""
    end = tr_onsets[-1] + np.median(np.diff(tr_onsets))                      # the end of the last TR
    problem = (
        f"word {np.argmin(np.isfinite(onsets))} starts at {onsets[np.argmin(np.isfinite(onsets))]}"
        if not np.isfinite(onsets).all() else
        f"they look like milliseconds (last word at {onsets.max():g}, last TR at {tr_onsets[-1]:g} s): "
        f"divide them by 1000" if 0 < 10 * tr_onsets[-1] < onsets.max() else
        f"word {np.argmax(np.diff(onsets) < 0) + 1} starts before the word before it"
        if np.any(np.diff(onsets) < 0) else
        f"they run from {onsets.min():g} to {onsets.max():g} s, beyond the TRs ({tr_onsets[0]:g}-{end:g} s)"
        if onsets.min() <= tr_onsets[0] or onsets.max() > end else "")
    if problem:
        raise ValueError(f"{path}: word onsets must be finite, non-decreasing seconds within the TRs of "
                         f"time_fmri.npy; {problem}")
    return np.searchsorted(tr_onsets, onsets, side="left") - 1


def _npy(path: Path, kinds: str, shape: tuple) -> np.ndarray:
    """np.load without pickles, its dtype kind in kinds and its shape (None = any length) checked."""
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        if "Object arrays" in str(e):
            raise ValueError(f"{path} holds Python objects (a pickled array); brainalign never loads "
                             f"pickles: re-save it as a plain numeric or string array") from None
        raise ValueError(f"{path} is not a readable .npy file ({e}); fetch it again") from None
    if x.dtype.kind not in kinds or x.ndim != len(shape) or any(
            want not in (None, got) for got, want in zip(x.shape, shape)):
        raise ValueError(f"{path}: expected an array of shape {shape} (None: any length) and dtype kind "
                         f"{kinds!r} (f float, i/u integer, U text), got shape {x.shape} and dtype {x.dtype}")
    return x


# --------------------------------------------------------------------------- Futrell2018 (behavioural)

def load_futrell2018(paths: list[Path]) -> list[ReadingTimes]:
    """Brain-Score's assembly as its benchmark reads it (1041be4 benchmarks/futrell2018/benchmark.py): words
    in stored order (story, then position; one running context), reading times (ms, NaN = not read;
    checked here, before any model runs), word_within_sentence_id (its 1s are left out of the score)."""
    asm = read_netcdf(paths[0])
    word_in_sentence, stories = _coord(asm, "word_within_sentence_id"), _coord(asm, "story_id", "story")
    if word_in_sentence.dtype.kind not in "iu":
        raise ValueError(f"{asm.path}: word_within_sentence_id must be integers, not "
                         f"{word_in_sentence.dtype}")
    unread, read = np.isnan(asm.data).all(axis=1), asm.data[~np.isnan(asm.data)]   # (n_words,), (n_read,)
    problem = (
        f"{unread.sum()} words (story {', '.join(map(str, dict.fromkeys(stories[unread].tolist())))}) have "
        f"no reading time from any subject" if unread.any() else
        f"{np.isinf(read).sum()} reading time(s) are inf" if np.isinf(read).any() else
        f"{(read <= 0).sum()} reading time(s) are 0 or negative (min {read.min():g})" if read.min() <= 0 else
        f"reading times up to {read.max():.3g} overflow float32 (3.4e38)" if read.max() > 3.4e38 else
        f"every reading time is {read[0]:g}: nothing to predict" if read.min() == read.max() else "")
    if problem:
        raise ValueError(f"{asm.path}: {problem}; reading times are positive milliseconds: the file is not "
                         f"the expected release, delete it and download again")
    return [ReadingTimes(name="Futrell2018", words=[str(w) for w in _coord(asm, "word")], stories=stories,
                         sentences=_coord(asm, "sentence_id"), word_in_sentence=word_in_sentence,
                         times=asm.data, subjects=_coord(asm, "subject_id", dim=asm.dims[1]).astype(str))]


# --------------------------------------------------------------------------- registry

_BS_NOW = "https://brainscore-storage.s3.amazonaws.com/brainscore-language/"  # since March 2026
_BS_OLD = "https://brainscore-language.s3.amazonaws.com/"                     # Brain-Score <= 2.2.1
_BS = "; packaged by Schrimpf et al. 2021, PNAS 118(45):e2105646118 (Brain-Score)"
_TONEVA = "github.com/mtoneva/brain_language_nlp (Toneva & Wehbe's code, commit 0f519a0)"
_WEHBE_FROM = (f"stimuli_words.npy is in the data/ folder of {_TONEVA}.",       # by name.startswith("fMRI/")
               f"The fMRI/ files are Toneva & Wehbe's preprocessed release, linked as 'preprocessed data "
               f"here' from the README of {_TONEVA}.")


def _brainscore_file(identifier: str, sha1: str, version_id: str) -> tuple[Remote]:
    name = "assy_" + identifier.replace(".", "_") + ".nc"
    return (Remote(name, (_BS_NOW + name, f"{_BS_OLD}{name}?versionId={version_id}"), sha1),)


# Ceilings: Brain-Score's (Pereira's parts, Blank2014, Futrell2018), the paper's Table 6 (Wehbe2014)
DATASETS: dict[str, DatasetInfo] = {info.name: info for info in (
    DatasetInfo("Pereira2018", "fMRI, 627 sentences (243 + 384, two experiments), 10 subjects",
                "Pereira et al. 2018, Nature Communications 9:963" + _BS,
                _brainscore_file("Pereira2018.language", "f8434b4022f5b2c862f0ff2854d5b3f5f2a7fb96",
                                 "fq0gh.P7ThLu6DWUulho5W_F.YTEhDqJ"),
                {"Pereira2018.243sentences": 0.35378928, "Pereira2018.384sentences": 0.36343748},
                load_pereira2018, "URLs and sha1 (from Brain-Score's source, not downloaded here)"),
    DatasetInfo("Blank2014", "fMRI, 1,317 story fragments (one per TR) x 60 language fROIs, 5 subjects",
                "Blank, Kanwisher & Fedorenko 2014, J Neurophysiol 112(5):1105-1118" + _BS,
                _brainscore_file("Blank2014.fROI", "af1e868821b897cb1684e4c8dcd33977121ef552",
                                 "qM.uLV8ltOHM297r2SaGteYMX4Vy.oHB"),
                {"Blank2014": 0.21026591}, load_blank2014,
                "URLs and sha1; that the file stores each story in presentation order"),
    DatasetInfo("Wehbe2014", "fMRI, Harry Potter ch. 9 (5,176 words, 0.5 s each), 1,211 TRs, 8 subjects",
                "Wehbe et al. 2014, PLoS ONE 9(11):e112575; preprocessed by Toneva & Wehbe 2019, NeurIPS",
                tuple(Remote(name, (), None, _WEHBE_FROM[name.startswith("fMRI/")]) for name in WEHBE_FILES),
                {"Wehbe2014": 0.104}, load_wehbe2014, "no sha1 is published (format, shapes and timings are "
                "checked; the sha1s of what was read are recorded); the layout, from Toneva & Wehbe's code"),
    DatasetInfo("Fedorenko2016", "ECoG, 416 words (52 sentences x 8) x 97 electrodes, 5 subjects",
                "Fedorenko et al. 2016, PNAS 113(41):E6256-E6262" + _BS,
                _brainscore_file("Fedorenko2016.language", "2966b6d78e972a72068aa6907377483f427e8d9a",
                                 "qvB7YZfEjbXEE64bODNLlQlZKWGpgPhy"),
                {}, load_fedorenko2016, "URLs and sha1; no ceiling is published"),
    DatasetInfo("Futrell2018", "self-paced reading times, 10,256 words of 10 Natural Stories x 180 subjects",
                "Futrell et al. 2018, The Natural Stories Corpus, LREC" + _BS,
                _brainscore_file("Futrell2018", "381ccc8038fbdb31235b5f3e1d350f359b5e287f",
                                 "MpR.gIXN8UrUnqwQyj.kCrh4VWrBvsGf"),
                {"Futrell2018": 0.858}, load_futrell2018,
                "URLs and sha1; the ceiling .858 (Brain-Score's test value)", behaviour=True))}


def ceiling(name: str) -> float:
    """A part's published ceiling; a dataset's, the mean over its parts (Pereira2018: .359, the paper's
    Table 6); NaN where none is published."""
    if name in DATASETS:
        return float(np.mean(list(DATASETS[name].ceilings.values()) or [np.nan]))
    if parts := [info.ceilings[name] for info in DATASETS.values() if name in info.ceilings]:
        return parts[0]
    names = dict.fromkeys([*DATASETS, *(part for info in DATASETS.values() for part in info.ceilings)])
    raise ValueError(f"unknown dataset or part {name!r}; choose one of: {', '.join(names)}")


# --------------------------------------------------------------------------- entry points

def load(name: str, data_dir: str | Path | None = None, *, files: list[str | Path] | None = None,
         download: bool = True) -> list[Dataset] | list[ReadingTimes]:
    """The dataset's parts to score separately and average (Pereira2018: 243sentences, 384sentences).
    files: paths given by hand (--data-file), in the order of DATASETS[name].files, read under any name
    without the checksum. Each part records its files' fingerprint()."""
    stamp = fingerprint(name, data_dir, files=files)           # checks name and files, downloads nothing
    info = DATASETS[name]
    paths = list(map(Path, files)) if files is not None else _fetch(info, data_home(data_dir), download)
    return [replace(part, **stamp) for part in info.loader(paths)]


def fingerprint(name: str, data_dir: str | Path | None = None, *,
                files: list[str | Path] | None = None) -> dict:
    """{"files": {file name: sha1}, "checksum": ...} of what load() reads, without downloading or parsing:
    registered sha1s as registered ("verified": load checks them), files given by hand their sha1
    ("skipped"), files without a published sha1 (Wehbe2014) the sha1 of those in the data folder
    ("unpublished"; a DownloadError names every missing file)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    info = DATASETS[name]
    if files is not None:
        if len(files) != len(info.files):
            raise ValueError(f"{name} reads {len(info.files)} file(s), in this order: "
                             f"{', '.join(r.name for r in info.files)}; got {len(files)}")
        if missing := [str(p) for p in files if not Path(p).is_file()]:
            raise ValueError(f"not a file: {', '.join(missing)}")
        return {"files": {Path(p).name: sha1sum(p) for p in files}, "checksum": "skipped"}
    folder, unpublished = data_home(data_dir), tuple(r for r in info.files if r.sha1 is None)
    _fetch(replace(info, files=unpublished), folder, download=False)        # names every missing file
    return {"files": {Path(r.name).name: r.sha1 or sha1sum(folder / r.name) for r in info.files},
            "checksum": "unpublished" if unpublished else "verified"}


def main(argv: list[str]) -> None:
    """python data.py NAME [FOLDER | FILE ...]: download (or read) a dataset and describe it."""
    if not argv or argv[0] not in DATASETS:
        sys.exit(f"usage: python data.py {{{','.join(DATASETS)}}} [FOLDER | FILE ...]")
    by_hand = len(argv) > 1 and Path(argv[1]).is_file()
    try:
        folder = None if by_hand or len(argv) < 2 else argv[1]
        parts = load(argv[0], folder, files=argv[1:] if by_hand else None)
    except (ValueError, OSError, DownloadError) as err:
        sys.exit(f"data.py: {err}")
    for d in parts:
        size = (f"{len(d.words)} words, reading times {d.times.shape}" if isinstance(d, ReadingTimes) else
                f"{len(d.texts)} stimuli in {len(set(d.groups))} groups, responses {d.responses.shape}")
        print(f"{d.name}: {size}, {len(set(d.subjects))} subjects, ceiling {ceiling(d.name)}, "
              f"checksum {d.checksum}")


if __name__ == "__main__":
    main(sys.argv[1:])
