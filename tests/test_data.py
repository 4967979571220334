"""Tests for data.py: every loader on small files written here in the real formats (Brain-Score NetCDF4
via h5py, Toneva & Wehbe's .npy release), the real Fedorenko2016 file when ../shared is present, the
checks on what the files mean, fingerprint() and ceiling(), and the download path against a local
http.server and file:// URLs. Offline, seconds. Run: python -m pytest -q tests/test_data.py
"""
import dataclasses
import hashlib
import http.server
import socket
import sys
import threading
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import data  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FEDORENKO_REAL = SHARED / "data" / "brainscore" / "Fedorenko2016_ecog.nc"


# --------------------------------------------------------------------------- fixture writers

def write_assembly(path, values, presentation, neuroid, dimension_list=True, fill=np.nan,
                   second_dim="neuroid"):
    """A Brain-Score assembly as its tools write it: `data`, dimension scales, 1-D coordinates."""
    with h5py.File(path, "w") as f:
        var = f.create_dataset("data", data=np.asarray(values), fillvalue=fill)
        var.attrs["_FillValue"] = np.array([fill])
        var.attrs["coordinates"] = " ".join([*presentation, *neuroid])
        var.attrs["class_name"] = "NeuroidAssembly"
        for axis, dim, coords in [(0, "presentation", presentation), (1, second_dim, neuroid)]:
            n = var.shape[axis]
            f.create_dataset(dim, data=np.zeros(n, dtype=">f4"))
            if dimension_list:
                f[dim].make_scale(f"This is a netCDF dimension but not a netCDF variable. {n:9d}")
                var.dims[axis].attach_scale(f[dim])
            for name, vals in coords.items():
                vals = np.asarray(vals)
                if vals.dtype.kind in "UO":
                    f.create_dataset(name, data=vals.astype(object), dtype=h5py.string_dtype())
                else:
                    f.create_dataset(name, data=vals)
                if dimension_list:
                    f[name].dims[0].attach_scale(f[dim])
    return Path(path)


def pereira_file(path, fill=np.nan, drop=(), one_missing=False):
    # 243sentences: passages of 3 and 4; 384sentences: 3 passages of 4 (ids up to .11, so string
    # order differs from presentation order); subject "C" did only 384sentences. one_missing: voxel A.1
    # lacks one 384sentences response.
    exps = ["243sentences"] * 7 + ["384sentences"] * 12
    nums = list(range(7)) + list(range(12))
    passage = [1, 1, 1, 2, 2, 2, 2] + [1] * 4 + [2] * 4 + [3] * 4
    label = [f"{e[:3]}-p{p}" for e, p in zip(exps, passage)]
    texts = [f"{e[:3]} sentence {n}." for e, n in zip(exps, nums)]
    values = np.random.default_rng(0).normal(size=(19, 6))
    values[:7, 4:] = fill                                   # C's two voxels: missing in 243sentences
    if one_missing:
        values[9, 1] = fill
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


def blank_file(path, rows, edit=None):
    values = np.arange(len(rows) * 4, dtype=float).reshape(len(rows), 4)
    if edit is not None:
        values[3, 1] = edit
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


FUTRELL_WORDS = "If you were to journey to the North of England you would come . Tom was here .".split()


def futrell_file(path, times=None):
    """Brain-Score's Futrell2018 layout: `data` (presentation x subject) of reading times in ms, NaN
    where a subject skipped a story; the second dimension is called `subject`."""
    n = len(FUTRELL_WORDS)
    stories = np.array([1] * 14 + [2] * (n - 14))
    if times is None:
        times = 300.0 + 7.0 * np.arange(n * 4).reshape(n, 4) % 53
        times[stories == 2, 0] = np.nan                     # subject 0 did not read story 2
    within = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 1, 2, 3, 4][:n]
    pres = {"word": FUTRELL_WORDS, "story_id": stories, "word_within_sentence_id": within,
            "sentence_id": [1] * 14 + [2] * (n - 14), "stimulus_id": np.arange(1, n + 1)}
    subj = {"subject_id": np.array(["A000", "A001", "A002", "A003"])}
    return write_assembly(path, times, pres, subj, second_dim="subject"), times


# Wehbe2014: Toneva & Wehbe's release layout at full length (1,351 TRs, 5,176 words), few voxels
RUN_LENGTHS = [338, 338, 338, 337]
RUNS = np.repeat([1, 2, 3, 4], RUN_LENGTHS)
TR_ONSETS = 2.0 * np.arange(1351)
WORD_ONSETS = 20.0 + 0.5 * np.arange(5176)       # word 0 exactly on TR 10's onset -> TR 9
VOXELS = dict(zip("FHIJKLMN", [3, 2, 4, 3, 2, 4, 3, 2]))


def write_wehbe(folder, edit=None):
    """stimuli_words.npy next to fMRI/ with the timing files and one (1211, n_voxels) float32 array per
    subject F..N. edit: {relative name: array} replaces a file (saved with pickles allowed)."""
    rng = np.random.default_rng(0)
    files = {"stimuli_words.npy": np.array([f"w{i}," if i % 7 == 0 else f"w{i}" for i in range(5176)]),
             "fMRI/time_fmri.npy": TR_ONSETS, "fMRI/runs_fmri.npy": RUNS,
             "fMRI/time_words_fmri.npy": WORD_ONSETS}
    for s, n in VOXELS.items():
        files[f"fMRI/data_subject_{s}.npy"] = rng.normal(size=(1211, n)).astype(np.float32)
    files.update(edit or {})
    (folder / "fMRI").mkdir(parents=True, exist_ok=True)
    for name, array in files.items():
        np.save(folder / name, array, allow_pickle=True)
    return files


def sha1(b):
    return hashlib.sha1(b).hexdigest()


def use_remote(monkeypatch, name, *remotes):
    monkeypatch.setitem(data.DATASETS, name, dataclasses.replace(data.DATASETS[name], files=tuple(remotes)))


# --------------------------------------------------------------------------- registry, ceilings

def test_registry_entries_are_complete():
    assert list(data.DATASETS) == ["Pereira2018", "Blank2014", "Wehbe2014", "Fedorenko2016", "Futrell2018"]
    for name, info in data.DATASETS.items():
        assert info.name == name and info.what and info.citation and info.files
        assert callable(info.loader) and info.behaviour == (name == "Futrell2018")
        for remote in info.files:
            assert remote.sha1 is None or len(remote.sha1) == 40
            assert all(u.startswith("https://") for u in remote.urls) and (remote.urls or remote.source)
    assert data.DATASETS["Pereira2018"].files[0].urls[0] == \
        "https://brainscore-storage.s3.amazonaws.com/brainscore-language/assy_Pereira2018_language.nc"
    assert data.DATASETS["Futrell2018"].files[0].sha1 == "381ccc8038fbdb31235b5f3e1d350f359b5e287f"
    assert "versionId=qM.uLV8ltOHM297r2SaGteYMX4Vy.oHB" in data.DATASETS["Blank2014"].files[0].urls[1]
    wehbe = data.DATASETS["Wehbe2014"].files
    assert [r.name for r in wehbe] == ["stimuli_words.npy", "fMRI/time_fmri.npy", "fMRI/runs_fmri.npy",
                                       "fMRI/time_words_fmri.npy",
                                       *(f"fMRI/data_subject_{s}.npy" for s in "FHIJKLMN")]
    assert all(r.sha1 is None and r.urls == () for r in wehbe)   # not published: never pretended
    assert "data/ folder of github.com/mtoneva/brain_language_nlp" in wehbe[0].source
    assert "preprocessed data here" in wehbe[-1].source


def test_ceilings_are_the_published_numbers():
    assert data.ceiling("Pereira2018.243sentences") == 0.35378928
    assert data.ceiling("Pereira2018.384sentences") == 0.36343748
    assert data.ceiling("Pereira2018") == pytest.approx((0.35378928 + 0.36343748) / 2, abs=1e-12)
    assert round(data.ceiling("Pereira2018"), 3) == 0.359                 # the paper's Table 6
    assert (data.ceiling("Blank2014"), data.ceiling("Wehbe2014"), data.ceiling("Futrell2018")) == \
        (0.21026591, 0.104, 0.858)
    assert np.isnan(data.ceiling("Fedorenko2016"))                        # none published
    with pytest.raises(ValueError, match=r"unknown dataset or part 'Pereira2018.384'; choose one of: "
                                         r"Pereira2018, .*Pereira2018.243sentences, "
                                         r"Pereira2018.384sentences"):
        data.ceiling("Pereira2018.384")


def test_unknown_dataset_lists_the_names(tmp_path):
    message = "unknown dataset 'Pereira'; choose one of: Pereira2018, Blank2014, Wehbe2014, Fedorenko2016, " \
              "Futrell2018"
    with pytest.raises(ValueError, match=message):
        data.load("Pereira", data_dir=tmp_path)
    with pytest.raises(ValueError, match=message):
        data.fingerprint("Pereira", data_dir=tmp_path)


# --------------------------------------------------------------------------- NetCDF4 reader

@pytest.mark.skipif(not FEDORENKO_REAL.is_file(), reason="../shared is absent")
def test_real_fedorenko2016_file():
    asm = data.read_netcdf(FEDORENKO_REAL)
    assert asm.dims == ("presentation", "neuroid") and asm.data.shape == (416, 97)
    assert asm.coords["word"][0] == "presentation" and asm.coords["subject_UID"][0] == "neuroid"
    (d,) = data.load("Fedorenko2016", files=[FEDORENKO_REAL])
    assert d.responses.shape == (416, 97) and d.responses.dtype == np.float32
    assert " ".join(d.texts[:8]) == "ALEX WAS TIRED SO HE TOOK A NAP"      # from `word`: no `stimulus`
    assert len(set(d.groups)) == 52 and d.groups[:9] == ["0"] * 8 + ["1"]
    assert sorted(set(d.subjects)) == ["1", "2", "3", "4", "5"] and np.isfinite(d.responses).all()
    assert d.stimulus_ids.dtype.kind == "i" and list(d.stimulus_ids[:3]) == [0, 1, 2]   # as stored
    assert d.checksum == "skipped"
    assert d.files == {FEDORENKO_REAL.name: "932bb0d2a2f5a50d96c6b33f88ede6f780b2488a"}   # its README's sha1
    assert (d.n_folds, d.gap, d.window, d.first_word, d.word_tr) == (0, 0, 0, 0, None)


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
    with pytest.raises(ValueError, match=r"f.nc: coordinate 'extra' \(length 5\) fits no single dimension "
                                         r"of `data` \{'presentation': 6, 'neuroid': 3\}"):
        data.read_netcdf(path)
    path, _ = fedorenko_file(tmp_path / "g.nc")
    with h5py.File(path, "a") as f:
        f["extra"] = np.arange(5)
        f["extra"].dims[0].attach_scale(f["presentation"])
    with pytest.raises(ValueError, match=r"g.nc: coordinate 'extra' \(length 5\) fits no single .*"
                                         r"DIMENSION_LIST: \('presentation',\)"):
        data.read_netcdf(path)


def test_reader_without_dimension_list_needs_distinct_lengths(tmp_path):
    path, _ = fedorenko_file(tmp_path / "sq.nc", dimension_list=False, n_electrodes=6)
    with pytest.raises(ValueError, match=r"sq.nc: coordinate '\w+' \(length 6\) fits no single dimension"):
        data.read_netcdf(path)


# --------------------------------------------------------------------------- Brain-Score datasets

@pytest.mark.parametrize("fill", [np.nan, -1e30])
def test_pereira2018_parts(tmp_path, fill):
    path, values = pereira_file(tmp_path / "p.nc", fill=fill)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p243, p384 = data.load("Pereira2018", files=[path])
    assert p243.name == "Pereira2018.243sentences" and p384.name == "Pereira2018.384sentences"
    # 243: subject C's voxels are NaN there and dropped; 384: all six voxels
    assert p243.responses.shape == (7, 4) and list(p243.subjects) == ["A", "A", "B", "B"]
    assert p384.responses.shape == (12, 6) and list(p384.subjects) == ["A", "A", "B", "B", "C", "C"]
    np.testing.assert_array_equal(p243.responses, values[:7, :4].astype(np.float32))
    np.testing.assert_array_equal(p384.responses, values[7:].astype(np.float32))
    # stored order, not the string order of stimulus_id ("384sentences.10" < "384sentences.2")
    assert p384.texts == [f"384 sentence {n}." for n in range(12)]
    assert list(p384.stimulus_ids) == [f"384sentences.{n}" for n in range(12)]
    assert sorted(p384.stimulus_ids) != list(p384.stimulus_ids)
    assert p243.groups == ["243-p1"] * 3 + ["243-p2"] * 4
    assert [data.ceiling(p.name) for p in (p243, p384)] == [0.35378928, 0.36343748]
    assert (p384.n_folds, p384.window, p384.n_tr, p384.word_tr, p384.sample_tr) == (0, 0, 0, None, None)
    # a neuroid missing even one response of an experiment leaves that experiment (dropna's how='any')
    path, values = pereira_file(tmp_path / "one.nc", fill=fill, one_missing=True)
    p243, p384 = data.load("Pereira2018", files=[path])
    assert list(p243.subjects) == ["A", "A", "B", "B"] and list(p384.subjects) == ["A", "B", "B", "C", "C"]
    np.testing.assert_array_equal(p384.responses, values[7:, [0, 2, 3, 4, 5]].astype(np.float32))


def test_pereira2018_from_data_dir_is_verified(tmp_path, monkeypatch):
    path, _ = pereira_file(tmp_path / "assy_Pereira2018_language.nc")
    remote = dataclasses.replace(data.DATASETS["Pereira2018"].files[0], sha1=data.sha1sum(path))
    use_remote(monkeypatch, "Pereira2018", remote)
    parts = data.load("Pereira2018", data_dir=tmp_path, download=False)
    assert [p.name for p in parts] == ["Pereira2018.243sentences", "Pereira2018.384sentences"]
    assert all(p.checksum == "verified" and p.files == {path.name: remote.sha1} for p in parts)


def test_pereira2018_bad_files(tmp_path):
    path, _ = pereira_file(tmp_path / "p.nc", drop=["experiment"])
    with pytest.raises(ValueError, match="p.nc: no coordinate 'experiment' along 'presentation'"):
        data.load("Pereira2018", files=[path])
    path, _ = pereira_file(tmp_path / "q.nc")
    with h5py.File(path, "a") as f:
        del f["experiment"]
        f.create_dataset("experiment", data=np.array(["243sentences"] * 19, dtype=object),
                         dtype=h5py.string_dtype())
    with pytest.raises(ValueError, match="q.nc: no presentations of experiment '384sentences' "
                                         r"\(found: 243sentences\)"):
        data.load("Pereira2018", files=[path])


def test_blank2014_story_order_and_subjects(tmp_path):
    rows = blank_rows()
    path, values = blank_file(tmp_path / "b.nc", rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (d,) = data.load("Blank2014", files=[path])
    assert d.name == "Blank2014" and d.responses.shape == (16, 4)
    assert d.groups == [r[0] for r in rows]                        # interleaved stories stay as stored
    boar = [t for t, g in zip(d.texts, d.groups) if g == "Boar"]
    assert boar == [f"Boar {s}-{p} " for s in range(3) for p in range(4)]   # presentation order
    assert list(d.stimulus_ids) == [f"{r[0]}.{r[1]}.{r[2]}" for r in rows]
    np.testing.assert_array_equal(d.responses, values.astype(np.float32))
    assert list(d.subjects) == ["088", "088", "090", "090"]


def test_blank2014_rows_stay_in_stored_order(tmp_path):
    # Brain-Score feeds each story in stored order (1041be4 benchmarks/blank2014/benchmark.py): no re-sorting
    rows = blank_rows(scramble=True)
    path, values = blank_file(tmp_path / "b.nc", rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (d,) = data.load("Blank2014", files=[path])
    assert d.groups == [r[0] for r in rows]
    assert d.texts == [f"{r[0]} {r[1]}-{r[2]} " for r in rows] and d.texts[0] == "Boar 0-1 "
    assert list(d.stimulus_ids) == [f"{r[0]}.{r[1]}.{r[2]}" for r in rows]
    np.testing.assert_array_equal(d.responses, values.astype(np.float32))


@pytest.mark.parametrize("value, message", [
    (np.nan, r"b.nc: Blank2014: 1 target\(s\) hold missing \(NaN\) values \(first: column 1\)"),
    (np.inf, r"b.nc: Blank2014: 1 target\(s\) hold inf \(first: column 1\)"),
    (1e39, r"b.nc: Blank2014: 1 target\(s\) hold values beyond float32's range \(up to 1e\+39"),
])
def test_bad_responses_are_named_for_what_they_are(tmp_path, value, message):
    path, _ = blank_file(tmp_path / "b.nc", blank_rows(), edit=value)
    with pytest.raises(ValueError, match=message):
        data.load("Blank2014", files=[path])


@pytest.mark.parametrize("with_stimulus", [True, False])
def test_fedorenko2016_text_from_stimulus_else_word(tmp_path, with_stimulus):
    path, values = fedorenko_file(tmp_path / "f.nc", with_stimulus=with_stimulus)
    (d,) = data.load("Fedorenko2016", files=[path])
    words = ["ALEX", "WAS", "TIRED", "SHE", "WORE", "RED"]
    assert d.texts == ([w.lower() for w in words] if with_stimulus else words)
    assert d.groups == ["0", "0", "0", "1", "1", "1"] and list(d.subjects) == ["1", "2", "1"]
    np.testing.assert_array_equal(d.responses, values.astype(np.float32))
    np.testing.assert_array_equal(d.stimulus_ids, np.arange(6))         # integer ids stay integers


def test_files_by_hand_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"Wehbe2014 reads 12 file\(s\), in this order: stimuli_words.npy, "
                                         r"fMRI/time_fmri.npy, .*; got 1"):
        data.load("Wehbe2014", files=[tmp_path / "x.npy"])
    with pytest.raises(ValueError, match="not a file: .*nope.nc"):
        data.load("Blank2014", files=[tmp_path / "nope.nc"])


# --------------------------------------------------------------------------- Wehbe2014

def test_wehbe2014_release(tmp_path):
    files = write_wehbe(tmp_path)
    (d,) = data.load("Wehbe2014", tmp_path, download=False)          # nothing to download: none tried
    assert d.name == "Wehbe2014" and len(d.texts) == 5176 and d.texts[:2] == ["w0,", "w1"]   # uncleaned
    assert d.groups == ["chapter9"] * 5176 and d.stimulus_ids is None
    assert (d.n_tr, d.first_word, d.n_folds, d.gap, d.window) == (1351, 20, 4, 5, 20)
    # word -> last TR starting strictly before it: TR k starts at 2k s, word i at 20 + 0.5 i s
    assert list(d.word_tr[:5]) == [9, 10, 10, 10, 10]
    np.testing.assert_array_equal(d.word_tr, np.ceil(WORD_ONSETS / 2) - 1)
    starts = np.cumsum([0] + RUN_LENGTHS[:-1])                        # each run keeps TRs [20:-15]
    np.testing.assert_array_equal(d.sample_tr, np.concatenate(
        [np.arange(s + 20, s + n - 15) for s, n in zip(starts, RUN_LENGTHS)]))
    assert len(d.sample_tr) == 1211 and d.responses.shape == (1211, 23) and d.responses.dtype == np.float32
    assert list(d.subjects) == [s for s, n in VOXELS.items() for _ in range(n)]
    np.testing.assert_array_equal(d.responses[:, 3:5], files["fMRI/data_subject_H.npy"])   # as released
    assert d.checksum == "unpublished"
    assert d.files == {Path(n).name: sha1((tmp_path / n).read_bytes()) for n in files}


def test_wehbe2014_files_given_by_hand(tmp_path):
    write_wehbe(tmp_path)
    paths = [tmp_path / r.name for r in data.DATASETS["Wehbe2014"].files]
    (d,) = data.load("Wehbe2014", files=paths)
    assert d.checksum == "skipped" and d.responses.shape == (1211, 23)


NAN_VOXEL = np.where(np.arange(3) == 1, np.nan, np.ones((1211, 3)))
EARLY = np.where(np.arange(5176) == 700, 10.0, WORD_ONSETS)


@pytest.mark.parametrize("edit, message", [
    ({"fMRI/data_subject_K.npy": np.array([{"a": 1}] * 3, dtype=object)},
     r"data_subject_K.npy is not a readable .npy file .*Object arrays.*; brainalign never loads pickles"),
    ({"fMRI/data_subject_F.npy": np.zeros((1210, 3))},
     r"data_subject_F.npy: expected an array of shape \(1211, None\)"),
    ({"fMRI/data_subject_J.npy": NAN_VOXEL},
     r"data_subject_J.npy: voxels: 1 target\(s\) hold missing \(NaN\) values \(first: column 1\)"),
    ({"fMRI/data_subject_L.npy": np.full((1211, 2), 1e39)},
     r"data_subject_L.npy: voxels: 2 target\(s\) hold values beyond float32's range"),
    ({"fMRI/data_subject_M.npy": np.zeros((1211, 0), np.float32)},
     r"data_subject_M.npy: expected an array of shape \(1211, None\) \(None: any length but 0\).* got shape "
     r"\(1211, 0\)"),
    ({"stimuli_words.npy": np.arange(5176)},
     r"stimuli_words.npy: expected an array of shape \(5176,\) .* got shape \(5176,\) and dtype int64"),
    ({"fMRI/time_words_fmri.npy": WORD_ONSETS[:-1]},
     r"time_words_fmri.npy: expected an array of shape \(5176,\)"),
    # TR onsets
    ({"fMRI/time_fmri.npy": np.where(np.arange(1351) == 5, np.nan, TR_ONSETS)},
     "time_fmri.npy: TR onsets must be finite and increasing seconds"),
    ({"fMRI/time_fmri.npy": TR_ONSETS[::-1]}, "time_fmri.npy: TR onsets must be finite and increasing"),
    # runs: the wrong count is the runs file's fault, not a subject file's
    ({"fMRI/runs_fmri.npy": np.repeat([1, 2, 3], [451, 450, 450])},
     r"runs_fmri.npy: the runs file must give the run of each TR, 4 runs .* found 3 run\(s\) of 451, 450"),
    ({"fMRI/runs_fmri.npy": np.repeat([1, 2, 3, 4, 5], [271, 270, 270, 270, 270])},
     "runs_fmri.npy: .* found 5 run"),
    ({"fMRI/runs_fmri.npy": RUNS[::-1]},
     "runs_fmri.npy: .* contiguous increasing blocks of more than 35 TRs"),
    ({"fMRI/runs_fmri.npy": np.repeat([1, 2, 3, 4], [30, 440, 440, 441])}, r"runs_fmri.npy: .* of 30, 440"),
    # word onsets
    ({"fMRI/time_words_fmri.npy": 1000 * WORD_ONSETS},
     r"time_words_fmri.npy: word onsets must be finite, non-decreasing seconds .* they look like "
     r"milliseconds "
     r"\(last word at 2\.6075e\+06, last TR at 2700 s\): divide them by 1000"),
    ({"fMRI/time_words_fmri.npy": np.where(np.arange(5176) == 3, np.nan, WORD_ONSETS)},
     "time_words_fmri.npy: word onsets must be finite.*; word 3 starts at nan"),
    ({"fMRI/time_words_fmri.npy": WORD_ONSETS[::-1].copy()}, "word 1 starts before the word before it"),
    ({"fMRI/time_words_fmri.npy": EARLY}, "word 700 starts before the word before it"),
    ({"fMRI/time_words_fmri.npy": WORD_ONSETS + 100},
     r"they run from 120 to 2707\.5 s, beyond the TRs \(0-2702 s\)"),
    ({"fMRI/time_words_fmri.npy": WORD_ONSETS - 20}, r"they run from 0 to 2587\.5 s, beyond the TRs"),
])
def test_wehbe2014_bad_files(tmp_path, edit, message):
    write_wehbe(tmp_path, edit=edit)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=message):
        data.load("Wehbe2014", tmp_path, download=False)
    assert sorted(tmp_path.rglob("*")) == before                   # nothing written, nothing moved


def test_wehbe2014_unreadable_file(tmp_path):
    write_wehbe(tmp_path)
    (tmp_path / "fMRI" / "data_subject_N.npy").write_bytes(b"not an npy file")
    with pytest.raises(ValueError, match="data_subject_N.npy is not a readable .npy file"):
        data.load("Wehbe2014", tmp_path, download=False)


def test_wehbe2014_every_missing_file_is_named_with_where_it_comes_from(tmp_path):
    write_wehbe(tmp_path)
    for name in ("stimuli_words.npy", "fMRI/data_subject_I.npy", "fMRI/data_subject_N.npy"):
        (tmp_path / name).unlink()
    for call in (data.load, data.fingerprint):
        with pytest.raises(data.DownloadError) as err:
            call("Wehbe2014", tmp_path)
        message = str(err.value)
        assert message.startswith("3 of 12 file(s) of Wehbe2014 are missing or bad")
        for name in ("stimuli_words.npy", "fMRI/data_subject_I.npy", "fMRI/data_subject_N.npy"):
            assert str(tmp_path / name) in message
        assert "data_subject_F.npy" not in message
        assert "stimuli_words.npy is in the data/ folder of github.com/mtoneva/brain_language_nlp" in message
        assert "'preprocessed data here' from the README of github.com/mtoneva/brain_language_nlp" in message


# --------------------------------------------------------------------------- Futrell2018

def test_futrell2018_loads_the_layout(tmp_path):
    path, times = futrell_file(tmp_path / "f.nc")
    (rt,) = data.load("Futrell2018", files=[path])
    assert isinstance(rt, data.ReadingTimes) and rt.name == "Futrell2018" and rt.words == FUTRELL_WORDS
    assert rt.subjects.tolist() == ["A000", "A001", "A002", "A003"] and rt.checksum == "skipped"
    np.testing.assert_array_equal(rt.times, times)                  # NaN kept: a subject skipped a story
    assert rt.stories.tolist() == [1] * 14 + [2] * 4 and rt.word_in_sentence[14] == 1
    assert data.ceiling(rt.name) == 0.858


def times_with(index, value):
    times = 300.0 + np.arange(18 * 4).reshape(18, 4)          # (n_words, n_subjects) ms
    times[index] = value
    return times


@pytest.mark.parametrize("times, message", [
    (times_with((3, 2), np.inf), r"1 reading time\(s\) are inf"),
    (times_with((3, 2), -5.0), r"1 reading time\(s\) are 0 or negative \(min -5\)"),
    (times_with((slice(0, 2), 1), 0.0), r"2 reading time\(s\) are 0 or negative"),
    (np.full((18, 4), 250.0), "every reading time is 250: nothing to predict"),
    (times_with((4, 0), 1e300), r"reading times up to 1e\+300 overflow float32"),
    (times_with(slice(14, 18), np.nan), r"4 words \(story 2\) have no reading time"),
])
def test_futrell2018_reading_times_are_checked_when_loaded(tmp_path, times, message):
    path, _ = futrell_file(tmp_path / "f.nc", times=times)
    with pytest.raises(ValueError, match=f"f.nc: {message}.*reading times are positive milliseconds"):
        data.load("Futrell2018", files=[path])


# --------------------------------------------------------------------------- fingerprint

def test_fingerprint_of_registered_files_needs_no_download(tmp_path):
    folder = tmp_path / "none"                                   # does not exist: nothing is touched
    assert data.fingerprint("Futrell2018", folder) == {
        "files": {"assy_Futrell2018.nc": "381ccc8038fbdb31235b5f3e1d350f359b5e287f"}, "checksum": "verified"}
    assert data.fingerprint("Pereira2018", folder)["files"] == {
        "assy_Pereira2018_language.nc": "f8434b4022f5b2c862f0ff2854d5b3f5f2a7fb96"}
    assert not folder.exists()


def test_fingerprint_is_what_load_records(tmp_path, monkeypatch):
    path, _ = fedorenko_file(tmp_path / "older.nc")
    stamp = data.fingerprint("Fedorenko2016", files=[path])
    assert stamp == {"files": {"older.nc": sha1(path.read_bytes())}, "checksum": "skipped"}
    (part,) = data.load("Fedorenko2016", files=[path])
    assert (part.files, part.checksum) == (stamp["files"], stamp["checksum"])
    remote = data.Remote("older.nc", ("https://127.0.0.1:1/",), data.sha1sum(path))
    use_remote(monkeypatch, "Fedorenko2016", remote)
    (part,) = data.load("Fedorenko2016", tmp_path, download=False)
    stamp = data.fingerprint("Fedorenko2016", tmp_path)
    assert {"files": part.files, "checksum": part.checksum} == stamp
    assert stamp == {"files": {"older.nc": sha1(path.read_bytes())}, "checksum": "verified"}
    write_wehbe(tmp_path / "w")
    (part,) = data.load("Wehbe2014", tmp_path / "w")
    stamp = data.fingerprint("Wehbe2014", tmp_path / "w")
    assert {"files": part.files, "checksum": part.checksum} == stamp and stamp["checksum"] == "unpublished"
    subject_k = tmp_path / "w" / "fMRI" / "data_subject_K.npy"
    assert stamp["files"]["data_subject_K.npy"] == sha1(subject_k.read_bytes())
    np.save(subject_k, np.ones((1211, 2), np.float32))
    assert data.fingerprint("Wehbe2014", tmp_path / "w")["files"]["data_subject_K.npy"] != \
        stamp["files"]["data_subject_K.npy"]                     # other data, another key


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
    assert (cache / "f.nc").read_bytes() == body and d.responses.shape == (6, 3) and d.checksum == "verified"
    assert sorted(p.name for p in cache.iterdir()) == ["f.nc"]           # no temp files left
    routes.clear()                                                       # second load: from cache
    assert data.load("Fedorenko2016", data_dir=cache, download=False)[0].texts == d.texts


def test_download_by_file_url(tmp_path, monkeypatch):
    src, _ = futrell_file(tmp_path / "src.nc")
    remote = data.Remote("assy_Futrell2018.nc", (src.as_uri(),), data.sha1sum(src))
    use_remote(monkeypatch, "Futrell2018", remote)
    (rt,) = data.load("Futrell2018", tmp_path / "cache")
    assert (tmp_path / "cache" / "assy_Futrell2018.nc").read_bytes() == src.read_bytes()
    assert rt.words == FUTRELL_WORDS and rt.checksum == "verified"


def test_download_wrong_sha1_is_moved_aside(tmp_path, server, monkeypatch):
    routes, url = server
    routes["/f.nc"] = (200, b"something else", None)
    use_remote(monkeypatch, "Fedorenko2016", data.Remote("f.nc", (f"{url}/f.nc",), "0" * 40))
    with pytest.raises(data.DownloadError, match=r"(?s)has sha1 .*expected 0{40}.*moved aside to .*f.nc.bad"):
        data.load("Fedorenko2016", data_dir=tmp_path)
    assert not (tmp_path / "f.nc").exists() and (tmp_path / "f.nc.bad").read_bytes() == b"something else"


def test_a_second_wrong_file_keeps_the_first_bad_copy(tmp_path, server, monkeypatch):
    routes, url = server
    routes["/a/f.nc"], routes["/b/f.nc"] = (200, b"second", None), (200, b"third", None)
    (tmp_path / "f.nc.bad").write_bytes(b"first")                       # from an earlier run
    remote = data.Remote("f.nc", (f"{url}/a/f.nc", f"{url}/b/f.nc"), "0" * 40)
    use_remote(monkeypatch, "Fedorenko2016", remote)
    with pytest.raises(data.DownloadError, match=r"(?s)aside to .*f.nc.bad.1 .*aside to .*f.nc.bad.2 "):
        data.load("Fedorenko2016", data_dir=tmp_path)
    assert [(tmp_path / n).read_bytes() for n in ("f.nc.bad", "f.nc.bad.1", "f.nc.bad.2")] == \
        [b"first", b"second", b"third"]
    assert not (tmp_path / "f.nc").exists()


def test_cached_file_with_wrong_sha1_is_moved_aside(tmp_path, monkeypatch):
    (tmp_path / "f.nc").write_bytes(b"truncated")
    use_remote(monkeypatch, "Fedorenko2016", data.Remote("f.nc", ("http://127.0.0.1:1/f.nc",), "1" * 40))
    with pytest.raises(data.DownloadError, match="moved aside to .*f.nc.bad and will not be used"):
        data.load("Fedorenko2016", data_dir=tmp_path, download=False)
    assert not (tmp_path / "f.nc").exists() and (tmp_path / "f.nc.bad").read_bytes() == b"truncated"


def test_read_only_folder_with_a_wrong_file_keeps_the_explanation(tmp_path, monkeypatch):
    (tmp_path / "f.nc").write_bytes(b"an older packaging")
    use_remote(monkeypatch, "Fedorenko2016", data.Remote("f.nc", ("http://127.0.0.1:1/f.nc",), "1" * 40))

    def refuse(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(data.os, "replace", refuse)
    with pytest.raises(data.DownloadError, match=r"(?s)has sha1 [0-9a-f]{40}, expected 1{40}.*could not be "
                                                 r"moved aside \(Permission denied\).*--data-file DATASET="):
        data.load("Fedorenko2016", data_dir=tmp_path, download=False)
    assert (tmp_path / "f.nc").read_bytes() == b"an older packaging"


def test_interrupted_download_leaves_nothing(tmp_path, server, monkeypatch):
    routes, url = server
    routes["/f.nc"] = (200, b"x" * 1000, 5000)                 # server closes after 1,000 of 5,000 bytes
    use_remote(monkeypatch, "Fedorenko2016", data.Remote("f.nc", (f"{url}/f.nc",), "2" * 40))
    with pytest.raises(data.DownloadError, match="download interrupted after 1,000 of 5,000 bytes"):
        data.load("Fedorenko2016", data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_offline_error_names_every_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    port = unused_port()
    remotes = [data.Remote(f"assy_{k}.nc", (f"http://127.0.0.1:{port}/assy_{k}.nc",), str(k) * 40)
               for k in (3, 4)]
    use_remote(monkeypatch, "Blank2014", *remotes)
    with pytest.raises(data.DownloadError) as err:
        data.load("Blank2014", data_dir=tmp_path / "cache")
    message = str(err.value)
    assert message.startswith("2 of 2 file(s) of Blank2014 are missing or bad")
    for remote in remotes:
        for part in [f"could not download {remote.name} from {remote.urls[0]}", f"sha1 {remote.sha1}",
                     f"put at {tmp_path / 'cache' / remote.name}"]:
            assert part in message
    assert "BRAINALIGN_DATA" in message and "--data-dir" in message
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_file_without_download(tmp_path):
    with pytest.raises(data.DownloadError, match=r"(?s)assy_Pereira2018_language.nc does not exist and "
                                                 r"downloading is off.*sha1 f8434b40.*brainscore-storage"):
        data.load("Pereira2018", data_dir=tmp_path, download=False)
    assert list(tmp_path.iterdir()) == []


def test_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINALIGN_DATA", str(tmp_path / "env"))
    assert data.data_home() == tmp_path / "env"
    assert data.data_home(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("BRAINALIGN_DATA")
    assert data.data_home() == Path.home() / ".cache" / "brainalign" / "data"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="data dir .*file is a file; give the folder"):
        data.load("Blank2014", data_dir=tmp_path / "file")


# --------------------------------------------------------------------------- write_atomic, unique

def test_write_atomic_bytes_str_and_callable(tmp_path):
    umask = data.os.umask(0)
    data.os.umask(umask)
    assert data.write_atomic(tmp_path / "sub" / "b", b"\x00\x01") == tmp_path / "sub" / "b"   # makes folders
    assert (tmp_path / "sub" / "b").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "b").stat().st_mode & 0o777 == 0o666 & ~umask          # as open() would
    data.write_atomic(str(tmp_path / "s"), "\u00e9\n")
    assert (tmp_path / "s").read_bytes() == b"\xc3\xa9\n"                              # UTF-8
    data.write_atomic(tmp_path / "s", lambda f: f.write(b"replaced"))                # over an existing file
    assert (tmp_path / "s").read_bytes() == b"replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s", "sub"]                 # no temp file left


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_write_atomic_error_leaves_neither_file_nor_temp(tmp_path, error):
    def fail(f):
        f.write(b"half")
        raise error("stop")

    with pytest.raises(error):
        data.write_atomic(tmp_path / "new", fail)
    (tmp_path / "old").write_bytes(b"kept")
    with pytest.raises(error):
        data.write_atomic(tmp_path / "old", fail)
    assert [(p.name, p.read_bytes()) for p in tmp_path.iterdir()] == [("old", b"kept")]


def test_write_atomic_replaces_a_link_and_leaves_its_target(tmp_path):
    (tmp_path / "target").write_bytes(b"target")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    data.write_atomic(tmp_path / "link", b"new")
    assert not (tmp_path / "link").is_symlink() and (tmp_path / "link").read_bytes() == b"new"
    assert (tmp_path / "target").read_bytes() == b"target"


def test_unique_takes_the_first_free_name(tmp_path):
    assert data.unique(tmp_path / "f") == tmp_path / "f"
    (tmp_path / "f").write_text("x")
    assert data.unique(tmp_path / "f") == tmp_path / "f.1"
    (tmp_path / "f.1").write_text("x")
    (tmp_path / "f.2").symlink_to(tmp_path / "missing")             # a dangling link is taken too
    assert data.unique(str(tmp_path / "f")) == tmp_path / "f.3"
    assert not (tmp_path / "f.3").exists()                          # unique() creates nothing


# --------------------------------------------------------------------------- python data.py

def test_main_describes_a_dataset_or_says_what_is_wrong(tmp_path, capsys):
    path, _ = fedorenko_file(tmp_path / "f.nc")
    data.main(["Fedorenko2016", str(path)])
    assert capsys.readouterr().out == ("Fedorenko2016: 6 stimuli in 2 groups, responses (6, 3), 2 subjects, "
                                       "ceiling nan, checksum skipped\n")
    with pytest.raises(SystemExit, match="usage: python data.py"):
        data.main(["Nope"])
    (tmp_path / "broken.nc").write_bytes(b"not hdf5")
    with pytest.raises(SystemExit, match="data.py: .*broken.nc is not a NetCDF4/HDF5 file"):
        data.main(["Fedorenko2016", str(tmp_path / "broken.nc")])
    with pytest.raises(SystemExit, match=r"data.py: 12 of 12 file\(s\) of Wehbe2014 are missing"):
        data.main(["Wehbe2014", str(tmp_path / "empty")])
