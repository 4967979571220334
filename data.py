"""The brain datasets brainalign scores against: downloaded, verified, cached, loaded as numpy arrays.

`DATASETS` (keys = CLI choices): Pereira2018 (fMRI, 627 sentences, two experiments scored separately),
Blank2014 (fMRI, 1,317 story fragments x 60 fROIs), Fedorenko2016 (ECoG, 416 words x 97 electrodes;
not in the paper), all three Brain-Score files, and Wehbe2014 (fMRI, Harry Potter ch. 9 read word by
word, 8 subjects; the original CMU MATLAB files). `load(name)` returns the parts to score and average.
Futrell2018 (self-paced reading times, 10,256 words x 180 subjects; Brain-Score's file) is behavioural:
it loads as one `ReadingTimes`, scored against model surprisal instead of layer activations.

How the data are prepared, and the source of each choice:
- Brain-Score files (NetCDF4 = HDF5) are read with h5py: `data` (presentation x neuroid, `_FillValue`
  -> NaN) and one 1-D variable per coordinate (variable-length strings decoded to str).
- Selection as in Brain-Score's benchmarks (brain-score/language, benchmarks/*/benchmark.py):
  Pereira2018: one experiment at a time, neuroids with any NaN in it dropped, context = passage_label.
  Blank2014: context = story. Fedorenko2016: context = sentence_id, text = `stimulus`, else `word`.
- Row order = the order stored in the file. Brain-Score's ShuffleSplit(10, train 0.9, random_state=1)
  runs over the target's stimulus_id values in stored order (its Split keeps unique_split_values=False;
  the sortby('stimulus_id') in its regression comes after the split and leaves an OLS fit unchanged),
  and it feeds every passage/story to the model in that same order, so the stored order reproduces
  both. Sorting by stimulus_id would not: the ids are strings ("Boar.10.0" < "Boar.2.0").
  Each group's stored order is checked against its presentation order (Pereira stimulus_num; Blank
  sentence_number_in_story, part_number_in_sentence; Fedorenko word_num); should a file break it, the
  group's rows are sorted within the positions it holds, with a warning (the splits then differ).
- Wehbe2014 follows Toneva & Wehbe 2019 (github mtoneva/brain_language_nlp, utils/utils.py), as reused
  by Aw & Toneva 2023 (github awwkl/brain_language_summarization): a word belongs to the last TR that
  starts strictly before its onset; each run keeps TRs [20:-15] (1,351 -> 1,211) and every voxel is
  z-scored within run; 4 contiguous folds, 5 TRs dropped at each train/test boundary; words 0..19 get
  no features (first_word=20). Texts are the file's words uncleaned (Toneva's copy keeps '+', '@').
  Our choices where the paper is silent: context_window = 20 words (Toneva & Wehbe feed each word with
  the most recent words as one sequence; 20 is the shortest window Aw & Toneva scored, and with
  first_word = 20 every featured word sees a full window of the same length); voxels = "all" voxels of
  every subject (Aw & Toneva average over all voxels), a parameter of load_wehbe2014(); voxels that
  are non-finite or constant within a run are dropped. Subjects share one TR timeline; their voxels
  are concatenated along targets, labelled "1".."8". Toneva & Wehbe's own preprocessed copy
  (detrended, smoothed, trimmed; subjects F..N, load_wehbe2014_preprocessed) is read instead when
  its files are in the data folder. Of its preprocessing, the CMU loader does the linear detrending
  per run; no source states the smoothing kernel, so it smooths nothing.
- Futrell2018 as Brain-Score's benchmark reads it (brain-score/language 1041be4
  benchmarks/futrell2018/benchmark.py): the words in stored order (story, then position; the 10
  stories are one running context), reading times (presentation x subject, NaN where a subject did
  not read a story), and word_within_sentence_id, whose 1s (first words) the score leaves out.
Left out: xarray, Brain-Score's ceiling estimation (ceilings are the published numbers), ROI masks.
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

import h5py
import numpy as np
import scipy.io
from tqdm.auto import tqdm


@dataclass(frozen=True)
class Dataset:
    name: str                  # e.g. "Pereira2018.384sentences", "Blank2014", "Wehbe2014", "Fedorenko2016"
    texts: list[str]           # (n_stimuli,) stimulus texts in presentation order
    groups: list[str]          # (n_stimuli,) context group: a model sees the texts of the same group
                               #   up to and including stimulus i (passage / story / sentence / chapter)
    responses: np.ndarray      # (n_samples, n_targets) float32. n_samples == n_stimuli except time series
    subjects: np.ndarray       # (n_targets,) str, subject label per target
    ceiling: float             # noise ceiling
    cv: str                    # "shuffle": Brain-Score ShuffleSplit over stimuli; "kfold": contiguous folds
    n_folds: int = 10
    gap: int = 0               # samples dropped at each train/test boundary (kfold only)
    context_window: int = 0    # 0 = whole group; k = at most the k most recent stimuli of the group
    word_tr: np.ndarray | None = None    # (n_stimuli,) int: TR (full timeline) in which each word was shown
    sample_tr: np.ndarray | None = None  # (n_samples,) int: index in the full timeline of each response row
    n_tr: int = 0                        # length of the full TR timeline (1,351 for Wehbe2014)
    first_word: int = 0                  # words before this index get no features (Wehbe: 20)
    files: dict = field(default_factory=dict)   # file name -> sha1 of what was read (score records keep it)
    checksum: str = "synthetic"          # "verified" (sha1 as registered), "unpublished" (no sha1 to check),
                                         #   "skipped" (read by hand, --data-file), "synthetic"


@dataclass(frozen=True)
class ReadingTimes:
    name: str                   # "Futrell2018"
    words: list[str]            # (n_words,) in reading order: story, then position in the story
    stories: np.ndarray         # (n_words,) story of each word
    sentences: np.ndarray       # (n_words,) sentence of each word
    word_in_sentence: np.ndarray  # (n_words,) int, 1 = first word of its sentence
    times: np.ndarray           # (n_words, n_subjects) float64 reading times (ms), NaN = not read
    subjects: np.ndarray        # (n_subjects,) str
    ceiling: float              # Brain-Score's published ceiling (.858); brainalign recomputes it
    files: dict = field(default_factory=dict)   # as Dataset
    checksum: str = "synthetic"                  # as Dataset


@dataclass(frozen=True)
class Remote:
    name: str               # file name inside the data folder
    urls: tuple[str, ...]   # tried in order
    sha1: str | None        # None: no published checksum; format and shapes are checked instead


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    what: str
    citation: str
    files: tuple[Remote, ...]
    ceiling: float          # the paper's Table 6 (Pereira: mean of its two parts); NaN if none published
    unverified: str         # what could not be checked without internet


# --------------------------------------------------------------------------- registry

_BS_NOW = "https://brainscore-storage.s3.amazonaws.com/brainscore-language/"  # since March 2026
_BS_OLD = "https://brainscore-language.s3.amazonaws.com/"                     # Brain-Score <= 2.2.1
_CMU = ("http://www.cs.cmu.edu/~fmri/plosone/files/",
        "http://www.cs.cmu.edu/afs/cs/project/theo-73/www/plosone/files/")


def _brainscore_file(identifier: str, sha1: str, version_id: str) -> tuple[Remote]:
    name = "assy_" + identifier.replace(".", "_") + ".nc"
    return (Remote(name, (_BS_NOW + name, f"{_BS_OLD}{name}?versionId={version_id}"), sha1),)


_BRAINSCORE = ("Schrimpf et al. 2021, The neural architecture of language: Integrative modeling "
               "converges on predictive processing, PNAS 118(45):e2105646118")
DATASETS: dict[str, DatasetInfo] = {
    "Pereira2018": DatasetInfo(
        "Pereira2018", "fMRI, 627 sentences (243 + 384, two experiments), 10 subjects", (
            "Pereira et al. 2018, Toward a universal decoder of linguistic meaning from brain "
            "activation, Nature Communications 9:963; packaged by " + _BRAINSCORE),
        _brainscore_file("Pereira2018.language", "f8434b4022f5b2c862f0ff2854d5b3f5f2a7fb96",
                         "fq0gh.P7ThLu6DWUulho5W_F.YTEhDqJ"),
        0.359, "URLs and sha1 (taken from Brain-Score's source, not downloaded here)"),
    "Blank2014": DatasetInfo(
        "Blank2014", "fMRI, 1,317 story fragments (one per TR) x 60 language fROIs, 5 subjects", (
            "Blank, Kanwisher & Fedorenko 2014, A functional dissociation between language and "
            "multiple-demand systems revealed in patterns of BOLD signal fluctuations, "
            "J Neurophysiol 112(5):1105-1118; packaged by " + _BRAINSCORE),
        _brainscore_file("Blank2014.fROI", "af1e868821b897cb1684e4c8dcd33977121ef552",
                         "qM.uLV8ltOHM297r2SaGteYMX4Vy.oHB"),
        0.21026591, "URLs and sha1; that the file stores each story in presentation order"),
    "Wehbe2014": DatasetInfo(
        "Wehbe2014", "fMRI, Harry Potter ch. 9 (5,176 words, 0.5 s each), 1,351 TRs, 8 subjects", (
            "Wehbe et al. 2014, Simultaneously uncovering the patterns of brain regions involved in "
            "different story reading subprocesses, PLoS ONE 9(11):e112575; pipeline of Toneva & "
            "Wehbe 2019, Interpreting and improving natural-language processing (in machines) with "
            "natural language-processing (in the brain), NeurIPS"),
        tuple(Remote(f"subject_{k}.mat", tuple(u + f"subject_{k}.mat" for u in _CMU), None)
              for k in range(1, 9)),
        0.104, "URLs; no sha1 is published (format and shapes are checked instead, and the sha1 "
               "of what was read is recorded); file layout; the preprocessed release (placed by hand, "
               "see WEHBE_PREPROCESSED) is used instead when present"),
    "Fedorenko2016": DatasetInfo(
        "Fedorenko2016", "ECoG, 416 words (52 sentences x 8) x 97 electrodes, 5 subjects", (
            "Fedorenko et al. 2016, Neural correlate of the construction of sentence meaning, "
            "PNAS 113(41):E6256-E6262; packaged by " + _BRAINSCORE),
        _brainscore_file("Fedorenko2016.language", "2966b6d78e972a72068aa6907377483f427e8d9a",
                         "qvB7YZfEjbXEE64bODNLlQlZKWGpgPhy"),
        float("nan"), "URLs and sha1; no ceiling is published (Brain-Score estimates it at run time)"),
    "Futrell2018": DatasetInfo(
        "Futrell2018", "self-paced reading times, 10,256 words of 10 Natural Stories x 180 subjects", (
            "Futrell et al. 2018, The Natural Stories Corpus, LREC; packaged by " + _BRAINSCORE),
        _brainscore_file("Futrell2018", "381ccc8038fbdb31235b5f3e1d350f359b5e287f",
                         "MpR.gIXN8UrUnqwQyj.kCrh4VWrBvsGf"),
        0.858, "URLs and sha1; the ceiling .858 (Brain-Score's test value; recomputed from the file)"),
}
PEREIRA_CEILINGS = {"243sentences": 0.35378928, "384sentences": 0.36343748}
WEHBE_N_TR, WEHBE_N_WORDS, WEHBE_TRIM, WEHBE_FIRST_WORD, WEHBE_CONTEXT = 1351, 5176, (20, 15), 20, 20


def info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


# --------------------------------------------------------------------------- download and cache

class DownloadError(RuntimeError):
    """A dataset file is missing, could not be downloaded, or failed its checksum."""


def data_home(data_dir: str | Path | None = None) -> Path:
    """data_dir, else $BRAINALIGN_DATA, else ~/.cache/brainalign/data."""
    default = Path.home() / ".cache" / "brainalign" / "data"
    path = Path(data_dir if data_dir is not None else os.environ.get("BRAINALIGN_DATA") or default)
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"data dir {path} is a file; give the folder that holds the dataset files "
                         f"(or use data.load_files(name, [path]) to read a file under another name)")
    return path


def fetch(name: str, data_dir: str | Path | None = None, download: bool = True) -> list[Path]:
    """Paths of the dataset's files in the data folder, each downloaded if missing and checked. Every
    file that cannot be had is reported in one error, not one at a time."""
    folder = data_home(data_dir)
    paths, failed = [], []
    for remote in info(name).files:
        try:
            paths.append(_fetch_file(remote, folder, download))
        except DownloadError as err:
            failed.append(str(err))
    if failed:
        raise DownloadError(f"{len(failed)} of {len(info(name).files)} file(s) of {name} are missing or "
                            "bad:\n\n" + "\n\n".join(failed))
    return paths


def _fetch_file(remote: Remote, folder: Path, download: bool) -> Path:
    path = folder / remote.name
    if path.exists():
        _check_sha1(path, remote)
        return path
    if not download:
        raise DownloadError(_by_hand(remote, path, f"{path} does not exist and downloading is off."))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(_by_hand(remote, path, f"{path} is missing and {folder} cannot be created "
                                                   f"({e.strerror}).")) from None
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


def sha1sum(path: str | Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha1(path: Path, remote: Remote) -> None:
    if remote.sha1 is None:
        return
    got = sha1sum(path)
    if got != remote.sha1:
        bad = path.with_name(path.name + ".bad")
        try:
            os.replace(path, bad)
            moved = f"it was moved aside to {bad} and will not be used"
        except OSError as e:             # a read-only data folder: say what is wrong all the same
            moved = f"it could not be moved aside ({e.strerror}) and will not be used"
        raise DownloadError(f"{path} has sha1 {got}, expected {remote.sha1} (truncated or a different "
                            f"file); {moved}. Run again to download a fresh copy, put the right file "
                            f"at {path}, or, if it is another packaging of the same data, read it "
                            f"without the checksum with --data-file DATASET={path}.")


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


# --------------------------------------------------------------------------- Brain-Score datasets

def _part(name: str, asm: Assembly, rows: np.ndarray, cols: np.ndarray, texts, groups, keys,
          subjects, ceiling: float) -> Dataset:
    groups = np.asarray(groups[rows]).astype(str)
    keys = [key[rows] for key in keys if key is not None and key.dtype.kind in "iuf"]
    rows = rows[_presentation_order(name, groups, keys)]
    responses = asm.data[np.ix_(rows, cols)].astype(np.float32)      # (n_stimuli, n_targets)
    if not np.isfinite(responses).all():
        raise ValueError(f"{asm.path}: {name} has missing (NaN) responses; the file is not the "
                         f"expected release, delete it and download again")
    return Dataset(name=name, texts=[str(t) for t in texts[rows]], groups=groups.tolist(),
                   responses=responses, subjects=np.asarray(subjects[cols]).astype(str),
                   ceiling=ceiling, cv="shuffle", n_folds=10)


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
    for exp, ceiling in PEREIRA_CEILINGS.items():
        rows = np.flatnonzero(experiment == exp)
        if rows.size == 0:
            raise ValueError(f"{asm.path}: no presentations of experiment {exp!r} "
                             f"(found: {', '.join(sorted(set(map(str, experiment))))})")
        cols = np.flatnonzero(~np.isnan(asm.data[rows]).any(axis=0))   # Brain-Score: dropna('neuroid')
        if cols.size == 0:
            raise ValueError(f"{asm.path}: every neuroid has NaN responses in experiment {exp!r}")
        parts.append(_part(f"Pereira2018.{exp}", asm, rows, cols, texts, groups, [number], subjects,
                           ceiling))
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
    return [_part(name, asm, rows, cols, _coord(asm, *text_names), _coord(asm, group_name), keys,
                  _coord(asm, *subject_names, dim="neuroid"), DATASETS[name].ceiling)]


# --------------------------------------------------------------------------- Wehbe2014 (MATLAB files)

def load_wehbe2014(paths: list[Path], voxels: str | dict[str, np.ndarray] = "all") -> list[Dataset]:
    """The CMU release. paths: subject_1.mat .. subject_8.mat. voxels: "all", or {subject label:
    column indices}. Each run is linearly detrended over all its TRs, trimmed to [20:-15] and
    z-scored (the preprocessed release is also smoothed; no source states the kernel, so we don't)."""
    if not (voxels == "all" or isinstance(voxels, dict)):
        raise ValueError(f"voxels must be 'all' or a dict {{subject: column indices}}, got {voxels!r}")
    first = _loadmat(paths[0], ["data", "time", "words"])
    onsets, runs = _wehbe_time(first["time"], paths[0])
    texts, word_tr = _wehbe_words(first["words"], onsets, paths[0])
    run_rows = [np.flatnonzero(runs == r) for r in np.unique(runs)]
    blocks, subjects = [], []
    for k, path in enumerate(paths, start=1):
        mat = first if k == 1 else _loadmat(path, ["data", "time"])
        if not np.array_equal(mat["time"], first["time"]):
            raise ValueError(f"{path}: its TR timeline (`time`) differs from {paths[0]}'s; all "
                             f"subjects must share one timeline")
        data = mat["data"]
        if data.ndim != 2 or data.shape[0] != WEHBE_N_TR or data.dtype.kind not in "fiu":
            raise ValueError(f"{path}: `data` must be a numeric ({WEHBE_N_TR}, n_voxels) array, got "
                             f"shape {data.shape} and dtype {data.dtype}")
        if isinstance(voxels, dict):
            if str(k) not in voxels:
                raise ValueError(f"voxels has no entry for subject {str(k)!r} (keys: {list(voxels)})")
            data = data[:, np.asarray(voxels[str(k)], dtype=int)]
        block = np.concatenate([_zscore(_detrend(data[rows])[WEHBE_TRIM[0]:-WEHBE_TRIM[1]])
                                for rows in run_rows])                  # (1211, n_voxels)
        usable = np.isfinite(block).all(axis=0)
        blocks.append(block[:, usable].astype(np.float32))
        subjects += [str(k)] * int(usable.sum())
    kept = np.concatenate([rows[WEHBE_TRIM[0]:-WEHBE_TRIM[1]] for rows in run_rows])
    return [_wehbe_dataset(texts, word_tr, kept, np.concatenate(blocks, axis=1), subjects)]


def _wehbe_dataset(texts, word_tr, kept, responses, subjects) -> Dataset:
    return Dataset(name="Wehbe2014", texts=texts, groups=["chapter9"] * len(texts),
                   responses=responses, subjects=np.asarray(subjects),
                   ceiling=DATASETS["Wehbe2014"].ceiling, cv="kfold", n_folds=4, gap=5,
                   context_window=WEHBE_CONTEXT, word_tr=word_tr, sample_tr=kept,
                   n_tr=WEHBE_N_TR, first_word=WEHBE_FIRST_WORD)


def _detrend(x: np.ndarray) -> np.ndarray:
    """Each column minus its least-squares line over the rows (scipy.signal.detrend(type='linear')),
    written out so that a non-finite column stays NaN (and is dropped) instead of failing the fit."""
    x = x.astype(np.float64)
    t = np.arange(x.shape[0]) - (x.shape[0] - 1) / 2.0               # centred time: (n,)
    xc = x - x.mean(axis=0)
    return xc - np.outer(t, t @ xc / (t @ t))


def _zscore(x: np.ndarray) -> np.ndarray:
    """Per column; a constant or non-finite column becomes NaN (and is dropped)."""
    x = x.astype(np.float64)
    std = x.std(axis=0)
    with np.errstate(invalid="ignore"):
        return (x - x.mean(axis=0)) / np.where(std > 0, std, np.nan)


def _loadmat(path: Path, names: list[str]) -> dict:
    try:
        mat = scipy.io.loadmat(path, variable_names=names)
    except Exception as e:                       # scipy raises several types for a broken file
        raise ValueError(f"{path} is not a readable MATLAB v5 file ({type(e).__name__}: {e}); "
                         f"delete it and download again") from None
    missing = [n for n in names if n not in mat]
    if missing:
        found = [n for n in mat if not n.startswith("__")]
        raise ValueError(f"{path} lacks the variable(s) {', '.join(missing)} (found: {', '.join(found)})")
    return mat


def _wehbe_time(time: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if time.shape != (WEHBE_N_TR, 2) or time.dtype.kind not in "fiu":
        raise ValueError(f"{path}: `time` must be a numeric ({WEHBE_N_TR}, 2) array (TR onset in s, "
                         f"run), got shape {time.shape} and dtype {time.dtype}")
    onsets, runs = time[:, 0].astype(np.float64), time[:, 1].astype(int)
    counts = np.unique(runs, return_counts=True)[1]
    if np.any(np.diff(onsets) <= 0) or np.any(np.diff(runs) < 0) or counts.min() <= sum(WEHBE_TRIM):
        raise ValueError(f"{path}: `time` must have increasing onsets and runs in contiguous blocks of "
                         f"more than {sum(WEHBE_TRIM)} TRs each")
    return onsets, runs


def _wehbe_words(words: np.ndarray, onsets: np.ndarray, path: Path) -> tuple[list[str], np.ndarray]:
    words = words.reshape(-1)
    if words.dtype.names is None or not {"text", "start"} <= set(words.dtype.names):
        raise ValueError(f"{path}: `words` must be a struct array with fields text, start, length")
    if words.size != WEHBE_N_WORDS:
        raise ValueError(f"{path}: `words` has {words.size} entries, expected {WEHBE_N_WORDS}")
    texts = [str(_scalar(w, path)) for w in words["text"]]
    starts = np.array([float(_scalar(s, path)) for s in words["start"]])
    word_tr = np.searchsorted(onsets, starts, side="left") - 1   # last TR starting strictly before
    if word_tr.min() < 0:
        raise ValueError(f"{path}: word {int(np.argmin(word_tr))} starts before the first TR")
    return texts, word_tr


def _scalar(x, path: Path):
    """Unwrap loadmat's nested 1-element arrays: array([['Harry']]) -> 'Harry'."""
    while isinstance(x, np.ndarray):
        if x.size != 1:
            raise ValueError(f"{path}: a `words` entry holds {x.size} values, expected one")
        x = x.reshape(-1)[0]
    return x


# --------------------------------------------------------------------------- Wehbe2014 (preprocessed release)
# Toneva & Wehbe's copy (github mtoneva/brain_language_nlp 0f519a0 README.md: "detrended, smoothed,
# and trimmed to remove the first 20TRs and the last 15TRs"), from their Google Drive folder, read
# as their code reads it: predict_brain_from_nlp.py np.load('./data/fMRI/data_subject_{}.npy') for
# subjects F H I J K L M N, (1211, n_voxels); utils/utils.py time_fmri.npy (TR onsets), runs_fmri.npy
# (run 1-4 of each TR), time_words_fmri.npy (word onsets); extract_nlp_features.py
# data/stimuli_words.npy (the words, in their repository). The data folder mirrors their data/.
# Shapes as awwkl/brain_language_summarization f341823 utils/utils.py annotates them: time_fmri
# (1351,) [0, 2, 4, ...], runs_fmri (1351,) 1..4, time_words_fmri (5176,) [20., 20.5, ...],
# data_subject (1211, ~27905).

WEHBE_SUBJECTS = tuple("FHIJKLMN")
WEHBE_PREPROCESSED = ("stimuli_words.npy", "fMRI/time_fmri.npy", "fMRI/runs_fmri.npy",
                      "fMRI/time_words_fmri.npy", *(f"fMRI/data_subject_{s}.npy" for s in WEHBE_SUBJECTS))


def wehbe2014_preprocessed(folder: str | Path) -> list[Path] | None:
    """The preprocessed release's files in folder (WEHBE_PREPROCESSED, in order), None if none is there."""
    paths = [Path(folder, name) for name in WEHBE_PREPROCESSED]
    missing = [str(p) for p in paths if not p.is_file()]
    if len(missing) == len(paths):
        return None
    if missing:
        raise ValueError(f"the preprocessed Wehbe2014 release in {folder} is incomplete: missing "
                         f"{', '.join(missing)}. Put all of {', '.join(WEHBE_PREPROCESSED)} there, or "
                         f"remove them to use the CMU release")
    return paths


def load_wehbe2014_preprocessed(paths: list[Path]) -> list[Dataset]:
    """paths: the files of WEHBE_PREPROCESSED, in that order. The responses are used as released
    (float32; z-scored per fold by the scoring); every voxel must be finite."""
    words, onsets, runs, word_onsets, *subject_files = [Path(p) for p in paths]
    texts = _npy(words, "U", (WEHBE_N_WORDS,))
    onsets = _npy(onsets, "fiu", (WEHBE_N_TR,)).astype(np.float64)
    runs = _npy(runs, "iuf", (WEHBE_N_TR,)).astype(int)
    word_onsets = _npy(word_onsets, "fiu", (WEHBE_N_WORDS,)).astype(np.float64)
    _wehbe_time(np.c_[onsets, runs], Path(paths[1]))
    word_tr = np.searchsorted(onsets, word_onsets, side="left") - 1     # last TR starting strictly before
    if word_tr.min() < 0:
        raise ValueError(f"{paths[3]}: word {int(np.argmin(word_tr))} starts before the first TR")
    kept = np.concatenate([np.flatnonzero(runs == r)[WEHBE_TRIM[0]:-WEHBE_TRIM[1]] for r in np.unique(runs)])
    blocks, subjects = [], []
    for label, path in zip(WEHBE_SUBJECTS, subject_files):
        data = _npy(path, "fiu", (len(kept), None))                      # (1211, n_voxels)
        bad = ~np.isfinite(data).all(axis=0)
        if bad.any():
            raise ValueError(f"{path}: {int(bad.sum())} voxel(s) hold NaN or inf (first: column "
                             f"{int(np.argmax(bad))}); the release has none, so the file is damaged "
                             f"or another copy: fetch it again")
        blocks.append(data.astype(np.float32))
        subjects += [label] * data.shape[1]
    return [_wehbe_dataset([str(w) for w in texts], word_tr, kept, np.concatenate(blocks, axis=1), subjects)]


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
    if not isinstance(x, np.ndarray) or x.dtype.kind not in kinds or x.ndim != len(shape) or any(
            want is not None and got != want for got, want in zip(x.shape, shape)):
        raise ValueError(f"{path}: expected an array of shape {shape} (None: any length) and dtype "
                         f"kind {kinds!r} (f float, i/u integer, U text), got "
                         f"shape {getattr(x, 'shape', None)} and dtype {getattr(x, 'dtype', None)}")
    return x


# --------------------------------------------------------------------------- Futrell2018 (behavioural)

def load_futrell2018(paths: list[Path]) -> list[ReadingTimes]:
    """Brain-Score's Futrell2018 assembly: words x subjects of reading times, in stored order."""
    asm = read_netcdf(paths[0])
    word_in_sentence = _coord(asm, "word_within_sentence_id")
    if word_in_sentence.dtype.kind not in "iu":
        raise ValueError(f"{asm.path}: word_within_sentence_id must be integers, got {word_in_sentence.dtype}")
    stories = _coord(asm, "story_id", "story")
    unread = np.isnan(asm.data).all(axis=1)
    if unread.any():   # its mean over subjects would be NaN: refuse rather than score around it
        bad = ", ".join(map(str, dict.fromkeys(stories[unread].tolist())))
        raise ValueError(f"{asm.path}: {int(unread.sum())} words (story {bad}) have no reading time from any "
                         f"subject; the file is not the expected release, delete it and download again")
    return [ReadingTimes(name="Futrell2018", words=[str(w) for w in _coord(asm, "word")], stories=stories,
                         sentences=_coord(asm, "sentence_id"), word_in_sentence=word_in_sentence,
                         times=asm.data, subjects=_coord(asm, "subject_id", dim=asm.dims[1]).astype(str),
                         ceiling=DATASETS["Futrell2018"].ceiling)]


# --------------------------------------------------------------------------- entry points

_LOADERS = {"Pereira2018": load_pereira2018, "Blank2014": load_blank2014,
            "Wehbe2014": load_wehbe2014, "Fedorenko2016": load_fedorenko2016,
            "Futrell2018": load_futrell2018}


def load(name: str, data_dir: str | Path | None = None, download: bool = True) -> list[Dataset | ReadingTimes]:
    """The dataset's parts to score separately and average (Pereira2018: 243sentences, 384sentences).
    Wehbe2014: Toneva & Wehbe's preprocessed release when its files are in the data folder, else
    the CMU release. Each part records the sha1 of every file read (Dataset.files)."""
    if name == "Wehbe2014" and (paths := wehbe2014_preprocessed(data_home(data_dir))):
        files = {p.name: sha1sum(p) for p in paths}                       # no sha1 is published
        return [replace(part, files=files, checksum="unpublished") for part in load_wehbe2014_preprocessed(paths)]
    remotes, paths = info(name).files, fetch(name, data_dir, download)
    files = {p.name: r.sha1 or sha1sum(p) for r, p in zip(remotes, paths)}    # registered sha1s were checked
    return [replace(part, files=files, checksum="verified" if all(r.sha1 for r in remotes) else "unpublished")
            for part in _read(name, paths)]


def load_files(name: str, paths: list[str | Path]) -> list[Dataset | ReadingTimes]:
    """Read files the caller names, under any file name and without a checksum (formats are checked);
    the parts record the sha1 of what was read and checksum="skipped"."""
    paths = _check_paths(name, paths)
    files = {p.name: sha1sum(p) for p in paths}
    return [replace(part, files=files, checksum="skipped") for part in _read(name, paths)]


def _read(name: str, paths: list[Path]) -> list[Dataset | ReadingTimes]:
    return _LOADERS[name](paths)


def _check_paths(name: str, paths: list[str | Path]) -> list[Path]:
    expected = info(name).files
    paths = [Path(p) for p in paths]
    if len(paths) != len(expected):
        raise ValueError(f"{name} needs {len(expected)} file(s) ({', '.join(r.name for r in expected)}), "
                         f"got {len(paths)}")
    for path in paths:
        if not path.is_file():
            raise ValueError(f"{path} is not a file")
    return paths


# --------------------------------------------------------------------------- synthetic (demo)

def demo_sentences(seed: int = 0) -> list[str]:
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


def synthetic(readout, sentences: list[str], seed: int = 0, noise: float = 1.0) -> dict[str, list[Dataset]]:
    """Pereira-, Blank- and Wehbe-shaped datasets (same fields, splits and context rules as the real
    ones, far smaller) whose responses are a noisy linear map of readout(texts, groups, window) ->
    (n_stimuli, n_features): what brainalign's offline demo plants its signal with."""
    rng = np.random.default_rng(seed)

    def planted(x, n_subjects, per_subject):
        unit = lambda a: (a - a.mean(0)) / (a.std(0) + 1e-12)              # noqa: E731
        y = unit(unit(x) @ rng.normal(size=(x.shape[1], n_subjects * per_subject)))
        y = y + noise * rng.normal(size=y.shape)
        return y.astype(np.float32), np.repeat([f"subj{k}" for k in range(n_subjects)], per_subject)

    out = {}
    for name, texts, size, ceiling, n_subj in (("Pereira2018", sentences[:96], 4, 0.359, 3),
                                               ("Blank2014", sentences[96:216], 10, 0.210, 2)):
        groups = [f"{name}.{i // size}" for i in range(len(texts))]
        y, subj = planted(readout(texts, groups, 0), n_subj, 20)
        out[name] = [Dataset(name, texts, groups, y, subj, ceiling, "shuffle")]
    words = " ".join(sentences[216:316]).split()[:480]        # 2 words per TR, 2 runs of TRs
    word_tr = np.arange(len(words)) // 2 + 4
    n_tr = int(word_tr[-1]) + 5
    sample_tr = np.r_[8:120, 128:n_tr - 3]
    feats = readout(words, ["chapter"] * len(words), 8)
    per_tr = np.zeros((n_tr, feats.shape[1]))
    np.add.at(per_tr, word_tr, feats)
    y, subj = planted(np.roll(per_tr, 2, axis=0)[sample_tr], 2, 30)     # a 2-TR response delay
    out["Wehbe2014"] = [Dataset("Wehbe2014", words, ["chapter"] * len(words), y, subj, 0.104, "kfold",
                                n_folds=4, gap=2, context_window=8, word_tr=word_tr,
                                sample_tr=sample_tr, n_tr=n_tr, first_word=4)]
    return out


def main(argv: list[str]) -> None:
    """python data.py NAME [FOLDER | FILE ...]: download (or read) a dataset and describe it."""
    if not argv or argv[0] not in DATASETS:
        sys.exit(f"usage: python data.py {{{','.join(DATASETS)}}} [FOLDER | FILE ...]")
    name, where = argv[0], argv[1:]
    is_file = bool(where) and Path(where[0]).is_file()
    try:
        parts = load_files(name, where) if is_file else load(name, where[0] if where else None)
    except (ValueError, OSError, DownloadError) as err:
        sys.exit(f"data.py: {err}")
    for d in parts:
        if isinstance(d, ReadingTimes):
            print(f"{d.name}: {len(d.words)} words, {len(set(d.stories.tolist()))} stories, reading times "
                  f"{d.times.shape}, {int(np.isnan(d.times).sum())} missing, checksum {d.checksum}")
            continue
        print(f"{d.name}: {len(d.texts)} stimuli, {len(set(d.groups))} groups, responses "
              f"{d.responses.shape}, {len(set(d.subjects))} subjects, ceiling {d.ceiling}, cv {d.cv}, "
              f"checksum {d.checksum}")


if __name__ == "__main__":
    main(sys.argv[1:])
