"""The PhyLL acoustic cavity's measurements as a file set with pinned checksums (no network:
the shared folder is found through ``$PHYS_DATA``)."""

from __future__ import annotations

import shutil

import pytest

import phys.data
from phys.checksums import read
from phys.devices.recorded_io import recording_files
from phys.download import ChecksumError, DownloadError, sha256sum


def test_the_shared_recordings_have_the_pinned_checksums(shared_data) -> None:
    folder = phys.data.acoustic_recordings(root=shared_data)
    assert folder == shared_data / "phyll_acoustic"
    pinned = read("phyll_acoustic.sha256")
    assert set(pinned) == {"x_data.csv", "y_data.csv", "LICENSE"}
    for name, digest in pinned.items():
        assert sha256sum(folder / name) == digest


def test_the_bare_name_resolves_to_the_file_set(shared_data, monkeypatch) -> None:
    monkeypatch.setenv("PHYS_DATA", str(shared_data))
    kind, files, _ = recording_files("phyll_acoustic")
    assert kind == "pair"
    assert files == (shared_data / "phyll_acoustic" / "x_data.csv",
                     shared_data / "phyll_acoustic" / "y_data.csv")


def test_a_damaged_file_is_fetched_again_never_used(shared_data, tmp_path, monkeypatch
                                                   ) -> None:
    folder = tmp_path / "phyll_acoustic"
    folder.mkdir()
    for name in ("x_data.csv", "LICENSE"):
        shutil.copy(shared_data / "phyll_acoustic" / name, folder / name)
    (folder / "y_data.csv").write_text("0,0\n")  # damaged
    fetched = []

    def refuse(file, target_folder):
        fetched.append(file.path)
        raise ChecksumError(f"{file.urls[0]} gave the wrong bytes")

    monkeypatch.setattr("phys.download._fetch", refuse)
    with pytest.raises(DownloadError):
        phys.data.acoustic_recordings(root=tmp_path)
    assert fetched == ["y_data.csv"]
    assert all(u.startswith("https://raw.githubusercontent.com/MomeniAli/PhyLL/e10480b")
               for u in phys.data._ACOUSTIC_URLS.values())
