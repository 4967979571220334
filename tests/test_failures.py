"""What happens when things go wrong with the data: each case ends in one clear message or a correct
result, and nothing valid is lost. (Model-side cases: tests/test_models.py; records and options:
tests/test_records.py.) Offline, seconds. Run: python -m pytest -q tests/test_failures.py"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import data  # noqa: E402
from test_data import fedorenko_file, use_remote, write_wehbe, words_element  # noqa: E402,F401


def test_read_only_folder_with_a_wrong_sha1_file_keeps_the_explanation(tmp_path, monkeypatch):
    (tmp_path / "f.nc").write_bytes(b"an older packaging")
    use_remote(monkeypatch, "Fedorenko2016", data.Remote("f.nc", ("http://127.0.0.1:1/f.nc",), "1" * 40))
    monkeypatch.setattr(data.os, "replace", lambda *a: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(data.DownloadError, match=r"(?s)has sha1 [0-9a-f]{40}, expected 1{40}.*could not be "
                                                 r"moved aside \(Permission denied\).*--data-file DATASET="):
        data.load("Fedorenko2016", data_dir=tmp_path, download=False)
    assert (tmp_path / "f.nc").read_bytes() == b"an older packaging"


def test_every_missing_wehbe_file_is_named_at_once(tmp_path, words_element):
    write_wehbe(tmp_path, words_element)
    for k in (3, 7):
        (tmp_path / f"subject_{k}.mat").unlink()
    with pytest.raises(data.DownloadError, match=r"(?s)2 of 8 file\(s\) of Wehbe2014.*subject_3.mat does not "
                                                 r"exist.*subject_7.mat does not exist"):
        data.load("Wehbe2014", data_dir=tmp_path, download=False)


def test_a_file_read_by_hand_records_its_sha1_and_the_skipped_checksum(tmp_path):
    path, _ = fedorenko_file(tmp_path / "older.nc")
    (part,) = data.load_files("Fedorenko2016", [path])
    assert part.checksum == "skipped" and part.files == {"older.nc": data.sha1sum(path)}


def test_registered_files_record_their_verified_sha1(tmp_path, monkeypatch):
    path, _ = fedorenko_file(tmp_path / "f.nc")
    use_remote(monkeypatch, "Fedorenko2016", data.Remote("f.nc", ("http://127.0.0.1:1/f.nc",), data.sha1sum(path)))
    (part,) = data.load("Fedorenko2016", data_dir=tmp_path, download=False)
    assert part.checksum == "verified" and part.files == {"f.nc": data.sha1sum(path)}


def test_python_data_py_prints_a_message_not_a_traceback(tmp_path):
    env = {**os.environ, "BRAINALIGN_DATA": str(tmp_path), "no_proxy": "*"}
    (tmp_path / "broken.nc").write_bytes(b"not hdf5")
    for argv, expected in ((["Nope"], "usage: python data.py"),
                           (["Fedorenko2016", str(tmp_path / "broken.nc")], "is not a NetCDF4/HDF5 file")):
        proc = subprocess.run([sys.executable, str(ROOT / "data.py"), *argv], capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode != 0 and expected in proc.stderr and "Traceback" not in proc.stderr


def test_cli_data_file_reads_another_packaging_and_says_so(tmp_path):
    pytest.importorskip("transformers")
    import brainalign as ba
    import models
    path, _ = fedorenko_file(tmp_path / "older.nc", n_electrodes=6)
    words = ["alex", "was", "tired", "she", "wore", "red"]
    model = models.make_tiny_model("gpt2", tmp_path / "m", words)
    with pytest.raises(SystemExit, match="too few stimuli|test samples"):   # 6 words: no valid splits
        ba.main(["--models", str(model), "--datasets", "Fedorenko2016", "--data-file", f"Fedorenko2016={path}",
                 "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert not list((tmp_path / "c").rglob("scores/*/*.json"))                # nothing cached
