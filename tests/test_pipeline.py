"""The real (non-demo) path end to end: dataset files in the real formats placed in a data folder,
loaded by name, a local model directory, every layer scored, records cached, tables written."""
import dataclasses
import hashlib
import json

import numpy as np
import pytest

import brainalign as ba
import data
from test_data import words_element, write_assembly, write_wehbe  # noqa: F401 (fixture)

models = pytest.importorskip("models")


def pereira_file(path):
    """Pereira2018 in Brain-Score's layout: 24 + 32 sentences in passages of 4, 2 subjects x 3 voxels."""
    exps = ["243sentences"] * 24 + ["384sentences"] * 32
    nums = list(range(24)) + list(range(32))
    texts = [f"Sentence {n} of passage {n // 4} in {e[:3]}." for e, n in zip(exps, nums)]
    pres = {"experiment": exps, "stimulus_num": nums, "stimulus": texts, "sentence": texts,
            "passage_index": [n // 4 for n in nums], "passage_label": [f"p{n // 4}" for n in nums],
            "stimulus_id": [f"{e}.{n}" for e, n in zip(exps, nums)]}
    neur = {"subject": ["A"] * 3 + ["B"] * 3, "voxel_num": [0, 1, 2] * 2,
            "neuroid_id": [f"{s}.{v}" for s in "AB" for v in range(3)]}
    return write_assembly(path, np.random.default_rng(0).normal(size=(56, 6)), pres, neur)


def test_main_scores_real_format_files_with_a_local_model(tmp_path, monkeypatch, words_element):
    folder = tmp_path / "data"
    folder.mkdir()
    pereira = pereira_file(folder / "assy_Pereira2018_language.nc")
    write_wehbe(folder, words_element)
    # the fixture is not the real file: pin the registry to its checksum, as for a real download
    info = data.DATASETS["Pereira2018"]
    remote = dataclasses.replace(info.files[0], sha1=hashlib.sha1(pereira.read_bytes()).hexdigest())
    monkeypatch.setitem(data.DATASETS, "Pereira2018", dataclasses.replace(info, files=(remote,)))
    texts = [t for name in ("Pereira2018", "Wehbe2014") for ds in data.load(name, folder) for t in ds.texts]
    model = models.make_tiny_model("gpt2", tmp_path / "tiny", texts, seed=0)

    args = ["--models", str(model), "--datasets", "Pereira2018", "Wehbe2014", "--data-dir", str(folder),
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    tables = ba.main(args)
    records = sorted((tmp_path / "cache" / "scores").rglob("*.json"))
    assert [r.name.split(".")[0] for r in records] == ["Pereira2018", "Wehbe2014"]
    pereira_rec, wehbe_rec = (json.loads(r.read_text()) for r in records)
    assert [r.name for r in records] == [f"{rec['dataset']}.{rec['key']}.json" for rec in (pereira_rec, wehbe_rec)]
    assert pereira_rec["scoring"]["numerics"] == "brainscore-2023" and pereira_rec["data"]["checksum"] == "verified"
    assert set(pereira_rec["parts"]) == {"Pereira2018.243sentences", "Pereira2018.384sentences"}
    best = pereira_rec["best_layer"]
    assert pereira_rec["score"] == pytest.approx(np.mean([p["layers"][best] for p in pereira_rec["parts"].values()]))
    assert len(wehbe_rec["parts"]["Wehbe2014"]["layers"]) == 3           # embeddings + 2 blocks
    assert wehbe_rec["layer_names"] == ["embeddings", "block.0", "block.1"]
    assert wehbe_rec["parts"]["Wehbe2014"]["n_targets"] == 26
    # Wehbe2014's choices and the sha1 of every file read are in the record; a score per subject
    w = wehbe_rec["scoring"]
    assert (w["wehbe_regression"], w["wehbe_features"], w["wehbe_window"]) == ("ridge", "words", 20)
    assert "wehbe_regression" not in pereira_rec["scoring"]
    mats = [folder / f"subject_{k}.mat" for k in range(1, 9)]
    assert wehbe_rec["data"]["files"] == {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in mats}
    assert list(wehbe_rec["parts"]["Wehbe2014"]["per_subject"][wehbe_rec["best_layer"]]) == [str(k) for k in range(1, 9)]
    assert all(np.isfinite(p["layers"]).all() for r in (pereira_rec, wehbe_rec) for p in r["parts"].values())
    row = list(tables.values())[0][0]
    assert row["model"] == model.name and "Average" in row
    assert (tmp_path / "out" / "tables.md").exists()
    # a second run reuses everything: no model is loaded
    monkeypatch.setattr(models, "_load", lambda *a, **k: pytest.fail("model loaded again"))
    assert ba.main(args + ["--force"]) == tables
