"""Tests for data.py: every loader on small files written here in the real formats (Brain-Score
NetCDF4 via h5py, the CMU MATLAB release via scipy.io.savemat), the real Fedorenko2016 file when
../shared is present, and the download path against a local http.server. Run: python -m pytest -q tests
"""
import dataclasses
import hashlib
import http.server
import io
import socket
import sys
import threading
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import data  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FEDORENKO_REAL = SHARED / "data" / "brainscore" / "Fedorenko2016_ecog.nc"


# --------------------------------------------------------------------------- fixture writers

def write_assembly(path, values, presentation, neuroid, dimension_list=True, fill=np.nan):
    """A Brain-Score assembly as its tools write it: `data`, dimension scales, 1-D coordinates."""
    with h5py.File(path, "w") as f:
        var = f.create_dataset("data", data=np.asarray(values), fillvalue=fill)
        var.attrs["_FillValue"] = np.array([fill])
        var.attrs["coordinates"] = " ".join([*presentation, *neuroid])
        var.attrs["class_name"] = "NeuroidAssembly"
        for dim, coords, n in [("presentation", presentation, var.shape[0]),
                               ("neuroid", neuroid, var.shape[1])]:
            f.create_dataset(dim, data=np.zeros(n, dtype=">f4"))
            if dimension_list:
                f[dim].make_scale(f"This is a netCDF dimension but not a netCDF variable. {n:9d}")
                var.dims[0 if dim == "presentation" else 1].attach_scale(f[dim])
            for name, vals in coords.items():
                vals = np.asarray(vals)
                if vals.dtype.kind in "UO":
                    f.create_dataset(name, data=vals.astype(object), dtype=h5py.string_dtype())
                else:
                    f.create_dataset(name, data=vals)
                if dimension_list:
                    f[name].dims[0].attach_scale(f[dim])
    return Path(path)


def pereira_file(path, fill=np.nan, drop=()):
    # 243sentences: passages of 3 and 4; 384sentences: 3 passages of 4 (ids up to .11, so string
    # order differs from presentation order); subject "C" did only 384sentences.
    exps = ["243sentences"] * 7 + ["384sentences"] * 12
    nums = list(range(7)) + list(range(12))
    passage = [1, 1, 1, 2, 2, 2, 2] + [1] * 4 + [2] * 4 + [3] * 4
    label = [f"{e[:3]}-p{p}" for e, p in zip(exps, passage)]
    texts = [f"{e[:3]} sentence {n}." for e, n in zip(exps, nums)]
    rng = np.random.default_rng(0)
    values = rng.normal(size=(19, 6))
    values[:7, 4:] = fill                                   # C's two voxels: missing in 243sentences
    pres = {"experiment": exps, "stimulus_num": nums, "sentence": texts, "stimulus": texts,
            "passage_index": passage, "passage_label": label,
            "stimulus_id": [f"{e}.{n}" for e, n in zip(exps, nums)]}
    neur = {"subject": ["A", "A", "B", "B", "C", "C"], "voxel_num": [0, 1, 0, 1, 0, 1],
            "neuroid_id": ["A.0", "A.1", "B.0", "B.1", "C.0", "C.1"]}
    for name in drop:
        pres.pop(name, None)
    return write_assembly(path, values, pres, neur, fill=fill), values


def blank_rows(scramble=False):
    # story "Boar" has 12 parts over 3 sentences and "Aqua" 4 parts; stored interleaved by TR
    # as Brain-Score's merge leaves them; stimulus_id = story.sentence.part
    boar = [(s, p) for s in range(3) for p in range(4)]
    aqua = [(s, 0) for s in range(4)]
    rows = []
    for t in range(12):
        rows.append(("Boar",) + boar[t])
        if t < 4:
            rows.append(("Aqua",) + aqua[t])
    if scramble:                       # swap Boar's first two rows
        rows[0], rows[2] = rows[2], rows[0]
    return rows


def blank_file(path, rows, nan=False):
    values = np.arange(len(rows) * 4, dtype=float).reshape(len(rows), 4)
    if nan:
        values[3, 1] = np.nan
    pres = {"story": [r[0] for r in rows], "stimulus": [f"{r[0]} {r[1]}-{r[2]} " for r in rows],
            "stimulus_id": [f"{r[0]}.{r[1]}.{r[2]}" for r in rows],
            "sentence_number_in_story": [r[1] for r in rows], "part_number_in_sentence": [r[2] for r in rows]}
    neur = {"subject_id": ["088", "088", "090", "090"], "fROI_area": ["01_LH_PostTemp", "03_LH_IFG"] * 2}
    return write_assembly(path, values, pres, neur), values


def fedorenko_file(path, with_stimulus=True, dimension_list=True, n_electrodes=3):
    words = ["ALEX", "WAS", "TIRED", "SHE", "WORE", "RED"]
    pres = {"stimulus_id": np.arange(6), "word": words, "word_num": [0, 1, 2, 0, 1, 2],
            "sentence_id": [0, 0, 0, 1, 1, 1]}
    if with_stimulus:
        pres["stimulus"] = [w.lower() for w in words]
    neur = {"electrode": np.arange(n_electrodes), "subject_UID": np.arange(n_electrodes) % 2 + 1}
    values = np.linspace(0, 1, 6 * n_electrodes).reshape(6, n_electrodes)
    return write_assembly(path, values, pres, neur, dimension_list=dimension_list), values


# Wehbe2014: the CMU layout, full size (1,351 TRs, 5,176 words) with a few voxels per subject
RUN_LENGTHS = [338, 338, 338, 337]
RUNS = np.repeat([1, 2, 3, 4], RUN_LENGTHS)
ONSETS = 2.0 * np.arange(data.WEHBE_N_TR)
STARTS = 20.0 + 0.5 * np.arange(data.WEHBE_N_WORDS)   # word 0 at 20 s: exactly on TR 10's onset


def mat_bytes(**variables):
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def words_element():
    words = np.zeros((1, data.WEHBE_N_WORDS), dtype=[("text", "O"), ("start", "O"), ("length", "O")])
    for i in range(data.WEHBE_N_WORDS):
        words[0, i] = (f"w{i}", STARTS[i], 0.5)
    return mat_bytes(words=words)[128:]    # the element after the 128-byte header, reused per subject


def subject_values(k):
    rng = np.random.default_rng(k)
    values = rng.normal(size=(data.WEHBE_N_TR, 3 + k % 2)) + 10.0 * RUNS[:, None]   # per-run offsets
    values += 0.02 * np.arange(data.WEHBE_N_TR)[:, None]                          # and a linear drift
    if k == 2:
        values[:, 0] = 5.0           # constant voxel: dropped
        values[100, 1] = np.nan      # non-finite voxel: dropped
    return values


def write_wehbe(folder, words_element, time=None, skip_words=False, override=None):
    folder.mkdir(parents=True, exist_ok=True)
    time = np.c_[ONSETS, RUNS] if time is None else time
    for k in range(1, 9):
        variables = {"data": subject_values(k), "time": time, "meta": {"nvoxels": 3 + k % 2}}
        variables.update((override or {}).get(k, {}))
        (folder / f"subject_{k}.mat").write_bytes(mat_bytes(**variables) + (b"" if skip_words else words_element))
    return [folder / f"subject_{k}.mat" for k in range(1, 9)]


# --------------------------------------------------------------------------- registry

def test_registry_entries_are_complete():
    assert list(data.DATASETS) == ["Pereira2018", "Blank2014", "Wehbe2014", "Fedorenko2016", "Futrell2018"]
    for name, info in data.DATASETS.items():
        assert info.name == name and info.citation and info.files and info.unverified
        for remote in info.files:
            assert remote.urls and all(u.startswith("http") for u in remote.urls)
            assert remote.sha1 is None or len(remote.sha1) == 40
    assert data.DATASETS["Pereira2018"].files[0].urls[0] == \
        "https://brainscore-storage.s3.amazonaws.com/brainscore-language/assy_Pereira2018_language.nc"
    assert "versionId=qM.uLV8ltOHM297r2SaGteYMX4Vy.oHB" in data.DATASETS["Blank2014"].files[0].urls[1]
    assert [r.name for r in data.DATASETS["Wehbe2014"].files] == [f"subject_{k}.mat" for k in range(1, 9)]
    assert data.DATASETS["Wehbe2014"].files[0].sha1 is None       # not published: never pretended


def test_unknown_dataset_lists_the_names(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'Pereira'; choose one of: Pereira2018, "
                                         "Blank2014, Wehbe2014, Fedorenko2016, Futrell2018"):
        data.load("Pereira", data_dir=tmp_path)


# --------------------------------------------------------------------------- NetCDF4 reader

@pytest.mark.skipif(not FEDORENKO_REAL.is_file(), reason="../shared is absent")
def test_real_fedorenko2016_file():
    asm = data.read_netcdf(FEDORENKO_REAL)
    assert asm.dims == ("presentation", "neuroid") and asm.data.shape == (416, 97)
    assert asm.coords["word"][0] == "presentation" and asm.coords["subject_UID"][0] == "neuroid"
    (d,) = data.load_files("Fedorenko2016", [FEDORENKO_REAL])
    assert d.responses.shape == (416, 97) and d.responses.dtype == np.float32
    assert " ".join(d.texts[:8]) == "ALEX WAS TIRED SO HE TOOK A NAP"      # from `word`: no `stimulus`
    assert len(set(d.groups)) == 52 and d.groups[:9] == ["0"] * 8 + ["1"]
    assert sorted(set(d.subjects)) == ["1", "2", "3", "4", "5"]
    assert np.isfinite(d.responses).all() and d.cv == "shuffle" and d.n_folds == 10


@pytest.mark.parametrize("dimension_list", [True, False])
def test_reader_coordinates_strings_and_dims(tmp_path, dimension_list):
    path, values = fedorenko_file(tmp_path / "f.nc", dimension_list=dimension_list)
    asm = data.read_netcdf(path)
    np.testing.assert_array_equal(asm.data, values)
    assert asm.coords["word"][0] == "presentation" and list(asm.coords["word"][1][:2]) == ["ALEX", "WAS"]
    assert isinstance(asm.coords["stimulus"][1][0], str)                 # vlen strings decoded
    assert asm.coords["subject_UID"][0] == "neuroid" and "presentation" not in asm.coords


def test_reader_numeric_fill_value_becomes_nan(tmp_path):
    path, _ = pereira_file(tmp_path / "p.nc", fill=-1e30)
    asm = data.read_netcdf(path)
    assert np.isnan(asm.data[:7, 4:]).all() and np.isfinite(asm.data[7:]).all()


def test_reader_bad_files(tmp_path):
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"CDF\x01 netcdf3 is not read here")
    with pytest.raises(ValueError, match="junk.nc is not a NetCDF4/HDF5 file"):
        data.read_netcdf(junk)
    with h5py.File(tmp_path / "nodata.nc", "w") as f:
        f["values"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"nodata.nc has no `data` variable \(variables: values\)"):
        data.read_netcdf(tmp_path / "nodata.nc")
    with h5py.File(tmp_path / "3d.nc", "w") as f:
        f["data"] = np.zeros((2, 2, 2))
    with pytest.raises(ValueError, match=r"3d.nc: `data` must be a 2-D numeric array, got shape \(2, 2, 2\)"):
        data.read_netcdf(tmp_path / "3d.nc")
    with h5py.File(tmp_path / "str.nc", "w") as f:
        f.create_dataset("data", data=np.array([["a", "b"]], dtype=object), dtype=h5py.string_dtype())
    with pytest.raises(ValueError, match="str.nc: `data` must be a 2-D numeric array.*dtype object"):
        data.read_netcdf(tmp_path / "str.nc")


def test_reader_coordinate_of_wrong_length(tmp_path):
    path, _ = fedorenko_file(tmp_path / "f.nc", dimension_list=False)
    with h5py.File(path, "a") as f:
        f["extra"] = np.arange(5)
    with pytest.raises(ValueError, match=r"f.nc: cannot tell which dimension coordinate 'extra' \(length 5\)"):
        data.read_netcdf(path)
    path, _ = fedorenko_file(tmp_path / "g.nc")
    with h5py.File(path, "a") as f:
        f["extra"] = np.arange(5)
        f["extra"].dims[0].attach_scale(f["presentation"])
    with pytest.raises(ValueError, match="g.nc: coordinate 'extra' has 5 values but dimension 'presentation' has 6"):
        data.read_netcdf(path)


def test_reader_without_dimension_list_needs_distinct_lengths(tmp_path):
    path, _ = fedorenko_file(tmp_path / "sq.nc", dimension_list=False, n_electrodes=6)
    with pytest.raises(ValueError, match="sq.nc: cannot tell which dimension coordinate"):
        data.read_netcdf(path)


# --------------------------------------------------------------------------- Brain-Score datasets

@pytest.mark.parametrize("fill", [np.nan, -1e30])
def test_pereira2018_parts(tmp_path, fill):
    path, values = pereira_file(tmp_path / "p.nc", fill=fill)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # stored in presentation order: no warning
        p243, p384 = data.load_files("Pereira2018", [path])
    assert p243.name == "Pereira2018.243sentences" and p384.name == "Pereira2018.384sentences"
    # 243: subject C's voxels are NaN there and dropped; 384: all six voxels
    assert p243.responses.shape == (7, 4) and list(p243.subjects) == ["A", "A", "B", "B"]
    assert p384.responses.shape == (12, 6) and list(p384.subjects) == ["A", "A", "B", "B", "C", "C"]
    np.testing.assert_array_equal(p243.responses, values[:7, :4].astype(np.float32))
    np.testing.assert_array_equal(p384.responses, values[7:].astype(np.float32))
    # stored order, not the string order of stimulus_id ("384sentences.10" < "384sentences.2")
    assert p384.texts == [f"384 sentence {n}." for n in range(12)]
    assert sorted(f"384sentences.{n}" for n in range(12)) != [f"384sentences.{n}" for n in range(12)]
    assert p243.groups == ["243-p1"] * 3 + ["243-p2"] * 4
    assert (p384.ceiling, p243.ceiling) == (0.36343748, 0.35378928)
    assert p384.cv == "shuffle" and p384.n_folds == 10 and p384.context_window == 0 and p384.word_tr is None


def test_pereira2018_from_data_dir(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    path, _ = pereira_file(folder / "assy_Pereira2018_language.nc")
    remote = dataclasses.replace(data.DATASETS["Pereira2018"].files[0], sha1=sha1(path.read_bytes()))
    use_remote(monkeypatch, "Pereira2018", remote)
    parts = data.load("Pereira2018", data_dir=folder, download=False)
    assert [p.name for p in parts] == ["Pereira2018.243sentences", "Pereira2018.384sentences"]


def test_pereira2018_bad_files(tmp_path):
    path, _ = pereira_file(tmp_path / "p.nc", drop=["experiment"])
    with pytest.raises(ValueError, match="p.nc: no coordinate 'experiment' along 'presentation'"):
        data.load_files("Pereira2018", [path])
    path, _ = pereira_file(tmp_path / "q.nc")
    with h5py.File(path, "a") as f:
        del f["experiment"]
        f.create_dataset("experiment", data=np.array(["243sentences"] * 19, dtype=object),
                         dtype=h5py.string_dtype())
    with pytest.raises(ValueError, match="q.nc: no presentations of experiment '384sentences' "
                                         r"\(found: 243sentences\)"):
        data.load_files("Pereira2018", [path])


def test_blank2014_story_order_and_subjects(tmp_path):
    rows = blank_rows()
    path, values = blank_file(tmp_path / "b.nc", rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (d,) = data.load_files("Blank2014", [path])
    assert d.name == "Blank2014" and d.responses.shape == (16, 4) and d.ceiling == 0.21026591
    assert d.groups == [r[0] for r in rows]                        # interleaved stories stay as stored
    boar = [t for t, g in zip(d.texts, d.groups) if g == "Boar"]
    assert boar == [f"Boar {s}-{p} " for s in range(3) for p in range(4)]   # presentation order
    np.testing.assert_array_equal(d.responses, values.astype(np.float32))
    assert list(d.subjects) == ["088", "088", "090", "090"]


def test_blank2014_scrambled_file_is_put_in_presentation_order(tmp_path):
    rows = blank_rows(scramble=True)
    path, values = blank_file(tmp_path / "b.nc", rows)
    with pytest.warns(UserWarning, match="reordered within each group, so the splits differ"):
        (d,) = data.load_files("Blank2014", [path])
    assert d.groups == [r[0] for r in rows]                        # each story keeps its positions
    boar = [t for t, g in zip(d.texts, d.groups) if g == "Boar"]
    assert boar == [f"Boar {s}-{p} " for s in range(3) for p in range(4)]
    assert d.texts[0] == "Boar 0-0 " and np.array_equal(d.responses[0], values[2].astype(np.float32))


def test_blank2014_nan_is_refused(tmp_path):
    path, _ = blank_file(tmp_path / "b.nc", blank_rows(), nan=True)
    with pytest.raises(ValueError, match=r"b.nc: Blank2014 has missing \(NaN\) responses"):
        data.load_files("Blank2014", [path])


@pytest.mark.parametrize("with_stimulus", [True, False])
def test_fedorenko2016_text_from_stimulus_else_word(tmp_path, with_stimulus):
    path, values = fedorenko_file(tmp_path / "f.nc", with_stimulus=with_stimulus)
    (d,) = data.load_files("Fedorenko2016", [path])
    words = ["ALEX", "WAS", "TIRED", "SHE", "WORE", "RED"]
    assert d.texts == ([w.lower() for w in words] if with_stimulus else words)
    assert d.groups == ["0", "0", "0", "1", "1", "1"] and list(d.subjects) == ["1", "2", "1"]
    np.testing.assert_array_equal(d.responses, values.astype(np.float32))


def test_load_files_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"Wehbe2014 needs 8 file\(s\) \(subject_1.mat, .*got 1"):
        data.load_files("Wehbe2014", [tmp_path / "subject_1.mat"])
    with pytest.raises(ValueError, match="nope.nc is not a file"):
        data.load_files("Blank2014", [tmp_path / "nope.nc"])


# --------------------------------------------------------------------------- Wehbe2014

def test_wehbe2014_pipeline(tmp_path, words_element):
    paths = write_wehbe(tmp_path / "w", words_element)
    (d,) = data.load_files("Wehbe2014", paths)
    assert d.name == "Wehbe2014" and len(d.texts) == 5176 and d.texts[:2] == ["w0", "w1"]
    assert d.groups == ["chapter9"] * 5176 and d.context_window == 20 and d.first_word == 20
    assert (d.cv, d.n_folds, d.gap, d.n_tr, d.ceiling) == ("kfold", 4, 5, 1351, 0.104)
    # word -> last TR starting strictly before it (word 0 at 20 s, exactly TR 10's onset -> TR 9)
    assert list(d.word_tr[:5]) == [9, 10, 10, 10, 10]
    np.testing.assert_array_equal(d.word_tr, np.searchsorted(ONSETS, STARTS) - 1)
    # each run keeps TRs [20:-15]
    starts = np.cumsum([0] + RUN_LENGTHS[:-1])
    expected = np.concatenate([np.arange(s + 20, s + n - 15) for s, n in zip(starts, RUN_LENGTHS)])
    np.testing.assert_array_equal(d.sample_tr, expected)
    assert len(d.sample_tr) == 1211
    # subjects 1..8 with 4,3,4,3,... voxels; subject 2 loses its constant and its NaN voxel
    counts = [3 + k % 2 - (2 if k == 2 else 0) for k in range(1, 9)]
    assert d.responses.shape == (1211, sum(counts)) and d.responses.dtype == np.float32
    assert list(d.subjects) == [str(k) for k, c in zip(range(1, 9), counts) for _ in range(c)]
    # z-scored within run (the +10 per run offsets are gone)
    run_of_row = RUNS[d.sample_tr]
    for r in range(1, 5):
        block = d.responses[run_of_row == r]
        np.testing.assert_allclose(block.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(block.std(0), 1, atol=1e-5)
    # each run linearly detrended over all its 338 TRs (np.polyfit), then trimmed and standardised
    raw = subject_values(1)[RUNS == 1, 0]
    resid = (raw - np.polyval(np.polyfit(np.arange(338), raw, 1), np.arange(338)))[20:-15]
    np.testing.assert_allclose(d.responses[run_of_row == 1, 0], (resid - resid.mean()) / resid.std(),
                               rtol=1e-4, atol=1e-5)
    # what was loaded, by sha1
    assert d.files == {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in paths}


def test_wehbe2014_voxel_choice(tmp_path, words_element):
    paths = write_wehbe(tmp_path / "w", words_element)
    picks = {str(k): [0] for k in range(1, 9)}
    picks["2"] = [2]
    (d,) = data.load_wehbe2014(paths, voxels=picks)
    assert d.responses.shape == (1211, 8) and list(d.subjects) == [str(k) for k in range(1, 9)]
    with pytest.raises(ValueError, match="voxels must be 'all' or a dict"):
        data.load_wehbe2014(paths, voxels="language")
    with pytest.raises(ValueError, match="voxels has no entry for subject '2'"):
        data.load_wehbe2014(paths, voxels={"1": [0]})


def test_wehbe2014_bad_files(tmp_path, words_element):
    paths = write_wehbe(tmp_path / "ok", words_element)
    junk = list(paths)
    junk[3] = tmp_path / "subject_4.mat"
    junk[3].write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(ValueError, match="subject_4.mat is not a readable MATLAB v5 file"):
        data.load_files("Wehbe2014", junk)
    paths = write_wehbe(tmp_path / "nowords", words_element, skip_words=True)
    with pytest.raises(ValueError, match=r"subject_1.mat lacks the variable\(s\) words \(found: "):
        data.load_files("Wehbe2014", paths)
    paths = write_wehbe(tmp_path / "time", words_element, time=np.c_[ONSETS, RUNS, RUNS])
    with pytest.raises(ValueError, match=r"subject_1.mat: `time` must be a numeric \(1351, 2\) array"):
        data.load_files("Wehbe2014", paths)
    paths = write_wehbe(tmp_path / "runs", words_element, time=np.c_[ONSETS, RUNS[::-1]])
    with pytest.raises(ValueError, match="runs in contiguous blocks of more than 35 TRs"):
        data.load_files("Wehbe2014", paths)
    paths = write_wehbe(tmp_path / "shift", words_element, override={5: {"time": np.c_[ONSETS + 1, RUNS]}})
    with pytest.raises(ValueError, match="subject_5.mat: its TR timeline .* differs from .*subject_1.mat"):
        data.load_files("Wehbe2014", paths)
    paths = write_wehbe(tmp_path / "shape", words_element, override={3: {"data": np.zeros((1350, 4))}})
    with pytest.raises(ValueError, match=r"subject_3.mat: `data` must be a numeric \(1351, n_voxels\) array"):
        data.load_files("Wehbe2014", paths)


def test_wehbe2014_bad_words(tmp_path):
    def one(words, name):
        folder = tmp_path / name
        element = mat_bytes(words=words)[128:]
        return write_wehbe(folder, element)

    short = np.zeros((1, 10), dtype=[("text", "O"), ("start", "O"), ("length", "O")])
    for i in range(10):
        short[0, i] = ("w", 20.0 + i, 0.5)
    with pytest.raises(ValueError, match="subject_1.mat: `words` has 10 entries, expected 5176"):
        data.load_files("Wehbe2014", one(short, "short"))
    with pytest.raises(ValueError, match="`words` must be a struct array with fields text, start"):
        data.load_files("Wehbe2014", one(np.zeros((1, 5176)), "plain"))


def test_wehbe2014_word_before_first_tr(tmp_path, words_element):
    paths = write_wehbe(tmp_path / "late", words_element, time=np.c_[ONSETS + 25, RUNS])
    with pytest.raises(ValueError, match="subject_1.mat: word 0 starts before the first TR"):
        data.load_files("Wehbe2014", paths)


# --------------------------------------------------------------------------- download and cache

@pytest.fixture
def server(monkeypatch):
    """A local HTTP server; set `routes[path] = (status, body, declared Content-Length or None)`."""
    monkeypatch.setenv("no_proxy", "*")
    routes = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status, body, length = routes.get(self.path, (404, b"missing", None))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)            # HTTP/1.0: the connection closes after the body

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield routes, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def use_remote(monkeypatch, name, *remotes):
    info = dataclasses.replace(data.DATASETS[name], files=tuple(remotes))
    monkeypatch.setitem(data.DATASETS, name, info)


def sha1(b):
    return hashlib.sha1(b).hexdigest()


def unused_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_lands_and_loads(tmp_path, server, monkeypatch):
    routes, url = server
    body = fedorenko_file(tmp_path / "src.nc")[0].read_bytes()
    routes["/new/f.nc"] = (200, body, None)
    use_remote(monkeypatch, "Fedorenko2016",
               data.Remote("f.nc", (f"{url}/gone/f.nc", f"{url}/new/f.nc"), sha1(body)))  # 404, then good
    cache = tmp_path / "cache"
    (d,) = data.load("Fedorenko2016", data_dir=cache)
    assert (cache / "f.nc").read_bytes() == body and d.responses.shape == (6, 3)
    assert sorted(p.name for p in cache.iterdir()) == ["f.nc"]           # no temp files left
    routes.clear()                                                       # second load: from cache
    assert data.load("Fedorenko2016", data_dir=cache, download=False)[0].texts == d.texts


def test_download_wrong_sha1_is_moved_aside(tmp_path, server, monkeypatch):
    routes, url = server
    routes["/f.nc"] = (200, b"something else", None)
    use_remote(monkeypatch, "Fedorenko2016", data.Remote("f.nc", (f"{url}/f.nc",), "0" * 40))
    with pytest.raises(data.DownloadError, match=r"(?s)has sha1 .*expected 0{40}.*moved aside to .*f.nc.bad"):
        data.load("Fedorenko2016", data_dir=tmp_path)
    assert not (tmp_path / "f.nc").exists() and (tmp_path / "f.nc.bad").read_bytes() == b"something else"


def test_cached_file_with_wrong_sha1_is_moved_aside(tmp_path, monkeypatch):
    (tmp_path / "f.nc").write_bytes(b"truncated")
    use_remote(monkeypatch, "Fedorenko2016", data.Remote("f.nc", ("http://127.0.0.1:1/f.nc",), "1" * 40))
    with pytest.raises(data.DownloadError, match="moved aside to .*f.nc.bad and will not be used"):
        data.load("Fedorenko2016", data_dir=tmp_path, download=False)
    assert not (tmp_path / "f.nc").exists() and (tmp_path / "f.nc.bad").exists()


def test_interrupted_download_leaves_nothing(tmp_path, server, monkeypatch):
    routes, url = server
    routes["/f.nc"] = (200, b"x" * 1000, 5000)                 # server closes after 1,000 of 5,000 bytes
    use_remote(monkeypatch, "Fedorenko2016", data.Remote("f.nc", (f"{url}/f.nc",), "2" * 40))
    with pytest.raises(data.DownloadError, match="download interrupted after 1,000 of 5,000 bytes"):
        data.load("Fedorenko2016", data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_offline_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    url = f"http://127.0.0.1:{unused_port()}/assy_x.nc"
    use_remote(monkeypatch, "Blank2014", data.Remote("assy_x.nc", (url,), "3" * 40))
    with pytest.raises(data.DownloadError) as err:
        data.load("Blank2014", data_dir=tmp_path / "cache")
    message = str(err.value)
    for part in ["could not download assy_x.nc", url, "sha1 " + "3" * 40,
                 f"put at {tmp_path / 'cache' / 'assy_x.nc'}", "BRAINALIGN_DATA", "--data-dir"]:
        assert part in message
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_file_without_download(tmp_path):
    with pytest.raises(data.DownloadError, match=r"(?s)assy_Pereira2018_language.nc does not exist and "
                                                 r"downloading is off.*sha1 f8434b40.*brainscore-storage"):
        data.load("Pereira2018", data_dir=tmp_path, download=False)


def test_wehbe_download_without_sha1(tmp_path, server, monkeypatch, words_element):
    routes, url = server
    paths = write_wehbe(tmp_path / "src", words_element)
    remotes = []
    for p in paths:
        routes[f"/{p.name}"] = (200, p.read_bytes(), None)
        remotes.append(data.Remote(p.name, (f"{url}/{p.name}",), None))
    use_remote(monkeypatch, "Wehbe2014", *remotes)
    (d,) = data.load("Wehbe2014", data_dir=tmp_path / "cache")
    assert d.responses.shape[0] == 1211 and len(list((tmp_path / "cache").iterdir())) == 8


def test_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINALIGN_DATA", str(tmp_path / "env"))
    assert data.data_home() == tmp_path / "env"
    assert data.data_home(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("BRAINALIGN_DATA")
    assert data.data_home() == Path.home() / ".cache" / "brainalign" / "data"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="data dir .*file is a file; give the folder"):
        data.load("Blank2014", data_dir=tmp_path / "file")
