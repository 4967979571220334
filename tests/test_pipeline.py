"""The real (non-demo) path end to end: dataset files in the real formats placed in a data folder,
loaded by name, a local model directory, every layer scored, records cached, tables written. The
responses in the files are planted from one layer of the model (a different one per dataset), so the
run must find that layer and a score near the one the planted noise allows, not just a finite number."""
import dataclasses
import hashlib
import json

import numpy as np
import pytest

import brainalign as ba
import data
from test_data import subject_values, words_element, write_assembly, write_wehbe  # noqa: F401 (fixture)

models = pytest.importorskip("models")
PLANTED = {"Pereira2018": 0, "Wehbe2014": 1}      # the layer each dataset's responses come from


def pereira_file(path, values=None):
    """Pereira2018 in Brain-Score's layout: 24 + 32 sentences in passages of 4, 2 subjects x 3 voxels."""
    exps = ["243sentences"] * 24 + ["384sentences"] * 32
    nums = list(range(24)) + list(range(32))
    texts = [f"Sentence {n} of passage {n // 4} in {e[:3]}." for e, n in zip(exps, nums)]
    pres = {"experiment": exps, "stimulus_num": nums, "stimulus": texts, "sentence": texts,
            "passage_index": [n // 4 for n in nums], "passage_label": [f"p{n // 4}" for n in nums],
            "stimulus_id": [f"{e}.{n}" for e, n in zip(exps, nums)]}
    neur = {"subject": ["A"] * 3 + ["B"] * 3, "voxel_num": [0, 1, 2] * 2,
            "neuroid_id": [f"{s}.{v}" for s in "AB" for v in range(3)]}
    if values is None:
        values = np.random.default_rng(0).normal(size=(56, 6))
    return write_assembly(path, values, pres, neur)


def planted(x, n_targets, rng, k=3, noise=0.5):
    """Responses (n, n_targets) = the top k principal components of x (n, p), mixed, plus noise."""
    xc = x - x.mean(axis=0)
    pcs = np.linalg.svd(xc, full_matrices=False)[0][:, :k]
    y = ba.zscore(pcs @ rng.normal(size=(k, n_targets)))
    return y + noise * rng.normal(size=y.shape)


def extract(model, ds, cache):
    """Exactly the call run_one makes, so the run finds these activations in its cache."""
    return models.extract(str(model), ds.texts, ds.groups, context_window=ds.context_window,
                          cache_dir=cache, dataset_key=ds.name, progress=False)


def test_main_scores_real_format_files_with_a_local_model(tmp_path, monkeypatch, words_element):
    folder, cache, rng = tmp_path / "data", tmp_path / "cache", np.random.default_rng(1)
    folder.mkdir()
    pereira = pereira_file(folder / "assy_Pereira2018_language.nc")
    wehbe_files = write_wehbe(folder, words_element)
    parts = data.load_files("Pereira2018", [pereira])
    [wehbe] = data.load_files("Wehbe2014", wehbe_files)
    model = models.make_tiny_model("gpt2", tmp_path / "tiny", [t for ds in parts + [wehbe] for t in ds.texts])

    # Pereira2018: each experiment's responses from its own stimuli's activations
    layer = PLANTED["Pereira2018"]
    pereira_file(pereira, np.vstack([planted(extract(model, ds, cache)[:, layer], 6, rng) for ds in parts]))
    # Wehbe2014: the words of each TR summed (4 per TR: their mean up to scale), a 2-TR delay
    words = np.arange(wehbe.first_word, len(wehbe.texts))
    per_tr = np.zeros((wehbe.n_tr, 32))
    np.add.at(per_tr, wehbe.word_tr[words], extract(model, wehbe, cache)[words, PLANTED["Wehbe2014"]])
    drive = planted(np.roll(per_tr, 2, axis=0), 4, rng, noise=0.0)         # (n_tr, 4)
    override = {}
    for k in range(1, 9):
        values = subject_values(k)
        values += 2.0 * drive[:, :values.shape[1]]
        values[:, 0] = 5.0 if k == 2 else values[:, 0]          # subject 2's constant voxel stays constant
        override[k] = {"data": values}
    write_wehbe(folder, words_element, override=override)
    # the fixture is not the real file: pin the registry to its checksum, as for a real download
    info = data.DATASETS["Pereira2018"]
    remote = dataclasses.replace(info.files[0], sha1=hashlib.sha1(pereira.read_bytes()).hexdigest())
    monkeypatch.setitem(data.DATASETS, "Pereira2018", dataclasses.replace(info, files=(remote,)))

    args = ["--models", str(model), "--datasets", "Pereira2018", "Wehbe2014", "--data-dir", str(folder),
            "--cache-dir", str(cache), "--out", str(tmp_path / "out"), "--wehbe-features", "context", "--numerics", "float64",
            "--embeddings"]   # the planted signal: the paper's features are tested in test_wehbe.py
    tables = ba.main(args)
    records = sorted((cache / "scores").rglob("*.json"))
    assert [r.name.split(".")[0] for r in records] == ["Pereira2018", "Wehbe2014"]
    pereira_rec, wehbe_rec = (json.loads(r.read_text()) for r in records)
    assert [r.name for r in records] == [f"{rec['dataset']}.{rec['key']}.json" for rec in (pereira_rec, wehbe_rec)]
    assert pereira_rec["scoring"]["numerics"] == "float64" and pereira_rec["data"]["checksum"] == "verified"
    assert set(pereira_rec["parts"]) == {"Pereira2018.243sentences", "Pereira2018.384sentences"}
    best = pereira_rec["best_layer"]
    assert pereira_rec["score"] == pytest.approx(np.mean([p["layers"][best] for p in pereira_rec["parts"].values()]))
    assert len(wehbe_rec["parts"]["Wehbe2014"]["layers"]) == 3           # embeddings + 2 blocks
    assert wehbe_rec["layer_names"] == ["embeddings", "block.0", "block.1"]
    assert wehbe_rec["parts"]["Wehbe2014"]["n_targets"] == 26
    # Wehbe2014's choices and the sha1 of every file read are in the record; a score per subject
    w = wehbe_rec["scoring"]
    assert (w["wehbe_regression"], w["wehbe_features"], w["wehbe_window"]) == ("ridge", "context", 20)
    assert "wehbe_regression" not in pereira_rec["scoring"]
    mats = [folder / f"subject_{k}.mat" for k in range(1, 9)]
    assert wehbe_rec["data"]["files"] == {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in mats}
    assert list(wehbe_rec["parts"]["Wehbe2014"]["per_subject"][wehbe_rec["best_layer"]]) == [str(k) for k in range(1, 9)]
    assert all(np.isfinite(p["layers"]).all() for r in (pereira_rec, wehbe_rec) for p in r["parts"].values())
    # the planted layer wins, with the score its noise allows
    assert pereira_rec["best_layer"] == PLANTED["Pereira2018"] and wehbe_rec["best_layer"] == PLANTED["Wehbe2014"]
    # measured 0.958, 0.926 and 0.777 (the next best layers: 0.676, 0.762 and 0.734)
    assert pereira_rec["parts"]["Pereira2018.243sentences"]["layers"][PLANTED["Pereira2018"]] > 0.95
    assert pereira_rec["parts"]["Pereira2018.384sentences"]["layers"][PLANTED["Pereira2018"]] > 0.92
    assert wehbe_rec["score"] > 0.77
    row = list(tables.values())[0][0]
    assert row["model"] == model.name and "Average" in row
    assert (tmp_path / "out" / "tables.md").exists()
    # a second run reuses everything: no model is loaded
    monkeypatch.setattr(models, "_load", lambda *a, **k: pytest.fail("model loaded again"))
    assert ba.main(args + ["--force"]) == tables
