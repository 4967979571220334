"""The brain datasets brainalign scores against: downloaded, verified, cached, loaded as numpy arrays.

DATASETS (keys = CLI choices) holds every fact about a dataset: files, sha1, citation, loader, published
ceilings; load(name) returns the parts to score. Brain-Score's NetCDF4 files are read with h5py; Wehbe2014
is Toneva & Wehbe's preprocessed release, placed by hand (ours: 20-word windows, all voxels). Left out:
xarray, ceiling estimation, ROI masks, Wehbe2014's raw CMU release. Run: python data.py NAME [FOLDER | FILE]
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
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
    word_tr: np.ndarray | None = None    # Wehbe2014 only (time series): (n_stimuli,) int, TR of each word
    sample_tr: np.ndarray | None = None  # (n_samples,) int: index in the full timeline of each response row
    n_tr: int = 0                        # length of the full TR timeline (1,351)
    first_word: int = 0                  # words before this index get no features (20)
    n_folds: int = 0                     # contiguous folds (4)
    gap: int = 0                         # TRs dropped at each train/test boundary (5)
    window: int = 0                      # words per word-feature window (20)
    files: dict = field(default_factory=dict)   # file name -> sha1 of what was read (score records keep it)
    checksum: str = "synthetic"  # "verified" | "unpublished" | "skipped" | "synthetic": see fingerprint()

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
    ceilings: dict[str, float]             # part -> published ceiling (Brain-Score's; Wehbe2014: Table 6)
    loader: Callable[[list[Path]], list]   # paths, in the order of files -> parts
    behaviour: bool = False                # reading times, scored against surprisal


# --------------------------------------------------------------------------- files: write, download, verify
os.umask(_UMASK := os.umask(0o022))     # read once (os.umask sets it: set it back)

def write_atomic(path: str | Path, write: bytes | str | Callable) -> Path:
    """Write bytes, str (UTF-8) or what write(binary file) writes atomically: temp file, fsync, rename; mode
    0o666 & ~umask, as open() gives; a link at path is replaced; any exception (Ctrl-C too) leaves nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(write):
                write(f)
            else:
                f.write(write.encode() if isinstance(write, str) else write)
            f.flush()
            os.chmod(tmp, 0o666 & ~_UMASK)                 # mkstemp gives 0o600: others could not read it
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path

def unique(path: str | Path) -> Path:
    """path if nothing (not even a link) is there, else the first free path.1, path.2, ..."""
    k, candidate = 0, Path(path)
    while os.path.lexists(candidate):
        k, candidate = k + 1, Path(f"{path}.{k + 1}")
    return candidate

class DownloadError(RuntimeError):
    """A dataset file is missing, could not be downloaded, or failed its checksum."""

def data_home(data_dir: str | Path | None = None) -> Path:
    """data_dir, else $BRAINALIGN_DATA, else ~/.cache/brainalign/data."""
    path = Path(data_dir or os.environ.get("BRAINALIGN_DATA") or "~/.cache/brainalign/data").expanduser()
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
        return _verified(path, remote)
    tried = [] if download else [f"{path} does not exist and downloading is off."]
    for url in remote.urls if download else ():
        try:
            _download(url, path)
            return _verified(path, remote)
        except (OSError, http.client.HTTPException, DownloadError) as e:
            tried.append(f"could not download {remote.name} from {url}\n    -> {e}")
    urls = "".join(f"\n  {url}" for url in remote.urls)
    raise DownloadError("\n".join(tried) + f"\nThe file {remote.name} (sha1 {remote.sha1}) can be downloaded "
                        f"by hand from{urls}\nand put at {path} (or in the folder given as data_dir / "
                        f"--data-dir, or named by the BRAINALIGN_DATA environment variable).")

def _download(url: str, path: Path) -> None:
    """Stream url into path through write_atomic: nothing half-downloaded stays."""
    def stream(out):
        with urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=path.name, disable=None) as bar:
                while chunk := response.read(1 << 20):
                    bar.update(out.write(chunk))
        if total is not None and out.tell() != total:
            raise DownloadError(f"download interrupted after {out.tell():,} of {total:,} bytes; nothing kept")
    write_atomic(path, stream)

def _verified(path: Path, remote: Remote) -> Path:
    """path if its sha1 is the registered one; else it is refused and moved aside to unique(path.bad)."""
    if remote.sha1 is None or (got := sha1sum(path)) == remote.sha1:
        return path
    try:
        os.replace(path, bad := unique(f"{path}.bad"))
        moved = f"was moved aside to {bad}"
    except OSError as e:             # a read-only data folder: say what is wrong all the same
        moved = f"could not be moved aside ({e.strerror})"
    raise DownloadError(f"{path} has sha1 {got}, expected {remote.sha1} (truncated or another file); it "
                        f"{moved} and will not be used. Run again to download a fresh copy, put the right "
                        f"file there, or read another packaging unchecked: --data-file DATASET={path}.")


# --------------------------------------------------------------------------- NetCDF4 (Brain-Score) reader
@dataclass(frozen=True)
class Assembly:
    path: Path
    data: np.ndarray                               # (n_presentation, n_neuroid) float64, NaN = missing
    dims: tuple[str, str]                          # usually ("presentation", "neuroid")
    coords: dict[str, tuple[str, np.ndarray]]      # name -> (dim, (n,) values)

    def coord(self, *names: str, dim: str = "presentation") -> np.ndarray:
        """The first of the named coordinates along dim."""
        if found := [self.coords[n][1] for n in names if self.coords.get(n, ("",))[0] == dim]:
            return found[0]
        raise ValueError(f"{self.path}: no coordinate {' or '.join(map(repr, names))} along {dim!r} (found: "
                         f"{', '.join(n for n, (d, _) in self.coords.items() if d == dim) or 'none'})")

def read_netcdf(path: str | Path) -> Assembly:
    """`data` (_FillValue -> NaN), 1-D coordinates along their DIMENSION_LIST, else the dim of that size."""
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
        dims = tuple(d[0].name.lstrip("/") for d in var.dims if len(d))      # its DIMENSION_LIST
        dims = dims if len(dims) == 2 else ("presentation", "neuroid")
        sizes, coords = dict(zip(dims, data.shape)), {}
        for name, var in f.items():
            if name == "data" or name in dims or not isinstance(var, h5py.Dataset) or var.ndim != 1:
                continue
            listed = tuple(d[0].name.lstrip("/") for d in var.dims if len(d))
            dim = [d for d in (listed or dims) if sizes.get(d) == var.shape[0]]
            if len(dim) != 1:
                raise ValueError(f"{path}: coordinate {name!r} (length {var.shape[0]}) fits no single "
                                 f"dimension of `data` {sizes} (its DIMENSION_LIST: {listed})")
            text = h5py.check_string_dtype(var.dtype) is not None
            coords[name] = (dim[0], np.asarray(var.asstr()[()], dtype=str) if text else
                            np.char.decode(var[()], "utf-8") if var.dtype.kind == "S" else var[()])
    return Assembly(path, data, dims, coords)

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
def _part(name: str, asm: Assembly, texts: tuple, groups: tuple, subjects: tuple,
          rows: np.ndarray | slice = slice(None), cols: np.ndarray | slice = slice(None)) -> Dataset:
    """rows x cols, in stored order as Brain-Score feeds them (1041be4 benchmarks/blank2014/benchmark.py
    story_indexer); its fit sorts each split by stimulus_id (metrics/linear_predictivity/metric.py sortby)."""
    groups = asm.coord(*groups)[rows].astype(str)
    return Dataset(name=name, texts=[str(t) for t in asm.coord(*texts)[rows]], groups=groups.tolist(),
                   responses=_float32(asm.data[rows][:, cols], asm.path, name),  # (n_stimuli, n_targets)
                   subjects=asm.coord(*subjects, dim="neuroid")[cols].astype(str),
                   stimulus_ids=asm.coord("stimulus_id")[rows])

def load_pereira2018(paths: list[Path]) -> list[Dataset]:
    """One part per experiment, neuroids with a NaN in it dropped (Brain-Score: dropna('neuroid'))."""
    asm = read_netcdf(paths[0])
    experiment, parts = asm.coord("experiment"), []
    for exp in ("243sentences", "384sentences"):
        if (rows := np.flatnonzero(experiment == exp)).size == 0:
            raise ValueError(f"{asm.path}: no presentations of experiment {exp!r} "
                             f"(found: {', '.join(sorted(set(map(str, experiment))))})")
        if (cols := np.flatnonzero(~np.isnan(asm.data[rows]).any(axis=0))).size == 0:
            raise ValueError(f"{asm.path}: every neuroid has NaN responses in experiment {exp!r}")
        parts.append(_part(f"Pereira2018.{exp}", asm, ("stimulus", "sentence"),
                           ("passage_label", "passage_index"), ("subject",), rows, cols))
    return parts

def load_blank2014(paths: list[Path]) -> list[Dataset]:
    return [_part("Blank2014", read_netcdf(paths[0]), ("stimulus",), ("story",),
                  ("subject_id", "subject_UID", "subject"))]

def load_fedorenko2016(paths: list[Path]) -> list[Dataset]:
    return [_part("Fedorenko2016", read_netcdf(paths[0]), ("stimulus", "word"), ("sentence_id",),
                  ("subject_UID", "subject_id", "subject"))]


# --------------------------------------------------------------------------- Wehbe2014 (preprocessed release)
# Toneva & Wehbe 2019's release, as their code reads data/ (mtoneva/brain_language_nlp 0f519a0: README.md
# "detrended, smoothed, and trimmed to remove the first 20TRs and the last 15TRs"; predict_brain_from_nlp.py,
# utils/utils.py, extract_nlp_features.py). Shapes: awwkl/brain_language_summarization f341823 utils/utils.py.
WEHBE_N_TR, WEHBE_N_WORDS, WEHBE_N_RUNS, WEHBE_TRIM = 1351, 5176, 4, (20, 15)
WEHBE_SUBJECTS = tuple("FHIJKLMN")
WEHBE_FILES = ("stimuli_words.npy", "fMRI/time_fmri.npy", "fMRI/runs_fmri.npy", "fMRI/time_words_fmri.npy",
               *(f"fMRI/data_subject_{s}.npy" for s in WEHBE_SUBJECTS))

def load_wehbe2014(paths: list[Path]) -> list[Dataset]:
    """paths: WEHBE_FILES, in order. Responses as released; words 0..19 get no features (utils.py); 4
    contiguous folds, 5 TRs dropped at each train/test boundary (utils.py CV_ind); 20-word windows (ours)."""
    words, tr_path, runs_path, onsets_path, *subject_paths = map(Path, paths)
    texts = [str(w) for w in _npy(words, "U", (WEHBE_N_WORDS,))]
    trs = _npy(tr_path, "fiu", (WEHBE_N_TR,)).astype(np.float64)                  # TR onsets (s)
    if not np.isfinite(trs).all() or np.any(np.diff(trs) <= 0):
        raise ValueError(f"{tr_path}: TR onsets must be finite and increasing seconds; fetch the file again")
    runs = _npy(runs_path, "fiu", (WEHBE_N_TR,))
    values, counts = np.unique(runs, return_counts=True)
    if len(values) != WEHBE_N_RUNS or np.any(np.diff(runs) < 0) or counts.min() <= sum(WEHBE_TRIM):
        raise ValueError(f"{runs_path}: the runs file must give the run of each TR, {WEHBE_N_RUNS} runs in "
                         f"contiguous increasing blocks of more than {sum(WEHBE_TRIM)} TRs; found "
                         f"{len(values)} run(s) of {', '.join(map(str, counts[:6]))} TRs; fetch it again")
    kept = np.concatenate([np.flatnonzero(runs == r)[WEHBE_TRIM[0]:-WEHBE_TRIM[1]] for r in values])  # 1211
    onsets = _npy(onsets_path, "fiu", (WEHBE_N_WORDS,)).astype(np.float64)        # word onsets (s)
    end, nan = trs[-1] + np.median(np.diff(trs)), np.argmin(np.isfinite(onsets))  # end of the last TR
    problem = (
        f"word {nan} starts at {onsets[nan]}" if not np.isfinite(onsets).all() else
        f"they look like milliseconds (last word at {onsets.max():g}, last TR at {trs[-1]:g} s): "
        f"divide them by 1000" if 0 < 10 * trs[-1] < onsets.max() else
        f"word {np.argmax(np.diff(onsets) < 0) + 1} starts before the word before it"
        if np.any(np.diff(onsets) < 0) else
        f"they run from {onsets.min():g} to {onsets.max():g} s, beyond the TRs ({trs[0]:g}-{end:g} s)"
        if onsets.min() <= trs[0] or onsets.max() > end else "")
    if problem:
        raise ValueError(f"{onsets_path}: word onsets must be finite, non-decreasing seconds within the TRs "
                         f"of time_fmri.npy; {problem}")
    blocks = [_npy(path, "fiu", (len(kept), None)) for path in subject_paths]    # (1211, n_voxels) each
    return [Dataset(name="Wehbe2014", texts=texts, groups=["chapter9"] * len(texts),
                    responses=np.hstack([_float32(b, p, "voxels") for b, p in zip(blocks, subject_paths)]),
                    subjects=np.repeat(WEHBE_SUBJECTS, [b.shape[1] for b in blocks]),
                    word_tr=np.searchsorted(trs, onsets) - 1,   # last TR starting before the word (utils.py)
                    sample_tr=kept, n_tr=WEHBE_N_TR, first_word=20, n_folds=4, gap=5, window=20)]

def _npy(path: Path, kinds: str, shape: tuple) -> np.ndarray:
    """np.load without pickles; its dtype kind in kinds and its shape (None: any length but 0) checked."""
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path} is not a readable .npy file of numbers or text ({e}); brainalign never "
                         f"loads pickles: fetch the file again, or re-save it as a plain array") from None
    if x.dtype.kind not in kinds or x.ndim != len(shape) or any(
            got == 0 or want not in (None, got) for got, want in zip(x.shape, shape)):
        raise ValueError(f"{path}: expected an array of shape {shape} (None: any length but 0), dtype kind "
                         f"{kinds!r} (f float, i/u integer, U text), got shape {x.shape} and dtype {x.dtype}")
    return x


# --------------------------------------------------------------------------- Futrell2018 (behavioural)
def load_futrell2018(paths: list[Path]) -> list[ReadingTimes]:
    """As Brain-Score 1041be4 benchmarks/futrell2018/benchmark.py reads it: words in stored order (one running
    context), reading times (ms, NaN = not read) checked before any model runs."""
    asm = read_netcdf(paths[0])
    word_in_sentence, stories = asm.coord("word_within_sentence_id"), asm.coord("story_id", "story")
    if word_in_sentence.dtype.kind not in "iu":
        raise ValueError(f"{asm.path}: word_within_sentence_id holds {word_in_sentence.dtype}, not integers")
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
    return [ReadingTimes(name="Futrell2018", words=[str(w) for w in asm.coord("word")], stories=stories,
                         sentences=asm.coord("sentence_id"), word_in_sentence=word_in_sentence,
                         times=asm.data, subjects=asm.coord("subject_id", dim=asm.dims[1]).astype(str))]


# --------------------------------------------------------------------------- registry
_BS_NOW = "https://brainscore-storage.s3.amazonaws.com/brainscore-language/"  # since March 2026
_BS_OLD = "https://brainscore-language.s3.amazonaws.com/"                     # Brain-Score <= 2.2.1
_BS = "; packaged by Schrimpf et al. 2021, PNAS 118(45):e2105646118 (Brain-Score)"
_TONEVA = "github.com/mtoneva/brain_language_nlp (Toneva & Wehbe's code, commit 0f519a0)"
_WEHBE_FROM = (f"stimuli_words.npy is in the data/ folder of {_TONEVA}.",       # by name.startswith("fMRI/")
               f"The fMRI/ files are linked as 'preprocessed data here' from the README of {_TONEVA}.")

def _brainscore_file(identifier: str, sha1: str, version_id: str) -> tuple[Remote]:
    name = "assy_" + identifier.replace(".", "_") + ".nc"
    return (Remote(name, (_BS_NOW + name, f"{_BS_OLD}{name}?versionId={version_id}"), sha1),)

DATASETS: dict[str, DatasetInfo] = {info.name: info for info in (
    DatasetInfo("Pereira2018", "fMRI, 627 sentences (243 + 384, two experiments), 10 subjects",
                "Pereira et al. 2018, Nature Communications 9:963" + _BS,
                _brainscore_file("Pereira2018.language", "f8434b4022f5b2c862f0ff2854d5b3f5f2a7fb96",
                                 "fq0gh.P7ThLu6DWUulho5W_F.YTEhDqJ"),
                {"Pereira2018.243sentences": 0.35378928, "Pereira2018.384sentences": 0.36343748},
                load_pereira2018),
    DatasetInfo("Blank2014", "fMRI, 1,317 story fragments (one per TR) x 60 language fROIs, 5 subjects",
                "Blank, Kanwisher & Fedorenko 2014, J Neurophysiol 112(5):1105-1118" + _BS,
                _brainscore_file("Blank2014.fROI", "af1e868821b897cb1684e4c8dcd33977121ef552",
                                 "qM.uLV8ltOHM297r2SaGteYMX4Vy.oHB"),
                {"Blank2014": 0.21026591}, load_blank2014),
    DatasetInfo("Wehbe2014", "fMRI, Harry Potter ch. 9 (5,176 words, 0.5 s each), 1,211 TRs, 8 subjects",
                "Wehbe et al. 2014, PLoS ONE 9(11):e112575; preprocessed by Toneva & Wehbe 2019, NeurIPS",
                tuple(Remote(name, (), None, _WEHBE_FROM[name.startswith("fMRI/")]) for name in WEHBE_FILES),
                {"Wehbe2014": 0.104}, load_wehbe2014),
    DatasetInfo("Fedorenko2016", "ECoG, 416 words (52 sentences x 8) x 97 electrodes, 5 subjects",
                "Fedorenko et al. 2016, PNAS 113(41):E6256-E6262" + _BS,
                _brainscore_file("Fedorenko2016.language", "2966b6d78e972a72068aa6907377483f427e8d9a",
                                 "qvB7YZfEjbXEE64bODNLlQlZKWGpgPhy"),
                {}, load_fedorenko2016),
    DatasetInfo("Futrell2018", "self-paced reading times, 10,256 words of 10 Natural Stories x 180 subjects",
                "Futrell et al. 2018, The Natural Stories Corpus, LREC" + _BS,
                _brainscore_file("Futrell2018", "381ccc8038fbdb31235b5f3e1d350f359b5e287f",
                                 "MpR.gIXN8UrUnqwQyj.kCrh4VWrBvsGf"),
                {"Futrell2018": 0.858}, load_futrell2018, behaviour=True))}

def ceiling(name: str) -> float:
    """A part's published ceiling; a dataset's, the mean of its parts' (Pereira2018 .359, Table 6); or NaN."""
    parts = {part: value for info in DATASETS.values() for part, value in info.ceilings.items()}
    if name in DATASETS:
        return float(np.mean(list(DATASETS[name].ceilings.values()) or [np.nan]))
    if name not in parts:
        raise ValueError(f"unknown dataset or part {name!r}; choose one of: {', '.join(DATASETS | parts)}")
    return parts[name]


# --------------------------------------------------------------------------- entry points
def load(name: str, data_dir: str | Path | None = None, *, files: list[str | Path] | None = None,
         download: bool = True) -> list[Dataset] | list[ReadingTimes]:
    """The parts to score; files (--data-file): paths in DATASETS[name].files order, checksum skipped."""
    stamp, info = fingerprint(name, data_dir, files=files), DATASETS[name]    # checks name and files first
    paths = list(map(Path, files)) if files is not None else _fetch(info, data_home(data_dir), download)
    return [replace(part, **stamp) for part in info.loader(paths)]

def fingerprint(name: str, data_dir: str | Path | None = None, *,
                files: list[str | Path] | None = None) -> dict:
    """{"files": {file name: sha1}, "checksum": "verified" (registered sha1s, load checks them) | "skipped"
    (files given by hand) | "unpublished" (Wehbe2014)} of what load() reads; downloads nothing."""
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
    name, *paths = argv
    try:
        parts = load(name, files=paths) if paths and Path(paths[0]).is_file() else load(name, *paths[:1])
    except (ValueError, OSError, DownloadError) as err:
        sys.exit(f"data.py: {err}")
    for d in parts:
        size = (f"{len(d.words)} words, reading times {d.times.shape}" if isinstance(d, ReadingTimes) else
                f"{len(d.texts)} stimuli in {len(set(d.groups))} groups, responses {d.responses.shape}")
        print(f"{d.name}: {size}, {len(set(d.subjects))} subjects, ceiling {ceiling(d.name)}, "
              f"checksum {d.checksum}")

if __name__ == "__main__":
    main(sys.argv[1:])
