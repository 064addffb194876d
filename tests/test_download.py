"""The downloader against a real HTTP server on 127.0.0.1 serving a temporary folder."""

import functools
import hashlib
import http.server
import os
import shutil
import socket
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from phys import data, download
from phys.download import ChecksumError, DownloadError, RemoteArchive, RemoteFile


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server API
        self.server.hits.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serves ``root`` at ``url``; ``hits`` lists the paths requested, in order."""
    for name in ("no_proxy", "NO_PROXY"):  # never send 127.0.0.1 through a configured proxy
        monkeypatch.setenv(name, "*")
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_CountingHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.hits = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_port}/",
                          hits=httpd.hits)
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache" / "dataset"


def test_data_dir_is_phys_data_else_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PHYS_DATA", str(tmp_path))
    assert download.data_dir() == tmp_path
    monkeypatch.delenv("PHYS_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert download.data_dir() == tmp_path / "home" / ".cache" / "phys"


def test_downloads_verifies_installs_and_never_downloads_again(server, cache):
    content = os.urandom(3 << 20)  # large enough for the progress-bar path
    (server.root / "a.bin").write_bytes(content)
    file = RemoteFile("sub/a.bin", sha(content), (server.url + "a.bin",))
    path = download.ensure(file, cache)
    assert path == cache / "sub" / "a.bin" and path.read_bytes() == content
    assert os.listdir(path.parent) == ["a.bin"]  # no temporary file left behind
    assert download.ensure(file, cache) == path
    assert server.hits == ["/a.bin"]  # the second call found the intact file


def test_wrong_checksum_raises_and_leaves_no_file(server, cache):
    (server.root / "a.bin").write_bytes(b"tampered")
    expected = sha(b"genuine")
    file = RemoteFile("a.bin", expected, (server.url + "a.bin",))
    with pytest.raises(ChecksumError) as info:
        download.ensure(file, cache)
    message = str(info.value)
    assert "a.bin" in message and expected in message and sha(b"tampered") in message
    assert not cache.exists() or os.listdir(cache) == []


def test_failed_download_leaves_an_existing_bad_file_untouched_then_replaces_it(server, cache):
    cache.mkdir(parents=True)
    (cache / "a.bin").write_bytes(b"stale")
    (server.root / "a.bin").write_bytes(b"tampered")
    file = RemoteFile("a.bin", sha(b"genuine"), (server.url + "a.bin",))
    with pytest.raises(ChecksumError):
        download.ensure(file, cache)
    assert os.listdir(cache) == ["a.bin"] and (cache / "a.bin").read_bytes() == b"stale"
    (server.root / "a.bin").write_bytes(b"genuine")
    assert download.ensure(file, cache).read_bytes() == b"genuine"


def test_http_404_raises_download_error_naming_url_and_target(server, cache):
    url = server.url + "missing.bin"
    with pytest.raises(DownloadError) as info:
        download.ensure(RemoteFile("missing.bin", sha(b""), (url,)), cache)
    message = str(info.value)
    assert not isinstance(info.value, ChecksumError)
    assert url in message and "HTTP 404" in message
    assert str(cache / "missing.bin") in message and "PHYS_DATA" in message
    assert not (cache / "missing.bin").exists()


def test_connection_refused_raises_download_error_naming_url(cache):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.bin"
    with pytest.raises(DownloadError, match="could not download a.bin") as info:
        download.ensure(RemoteFile("a.bin", sha(b""), (url,)), cache)
    assert url in str(info.value) and isinstance(info.value, RuntimeError)


def test_falls_back_to_the_next_mirror(server, cache):
    (server.root / "a.bin").write_bytes(b"genuine")
    file = RemoteFile("a.bin", sha(b"genuine"), (server.url + "gone/a.bin", server.url + "a.bin"))
    assert download.ensure(file, cache).read_bytes() == b"genuine"
    assert server.hits == ["/gone/a.bin", "/a.bin"]


def _zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)


def test_archive_members_are_verified_and_bad_ones_come_from_their_own_urls(server, cache):
    _zip(server.root / "men.zip", {"men/m01ae.wav": b"one", "men/m02ae.wav": b"corrupt",
                                   "men/readme.txt": b"not wanted"})
    (server.root / "m02ae.wav").write_bytes(b"two")
    files = [RemoteFile(f"wav/{n}", sha(c), (server.url + n,))
             for n, c in (("m01ae.wav", b"one"), ("m02ae.wav", b"two"))]
    archive = RemoteArchive((server.url + "gone.zip", server.url + "men.zip"), "m*.wav")
    paths = download.ensure_all(files, cache, archives=[archive])
    assert [p.read_bytes() for p in paths] == [b"one", b"two"]
    assert sorted(os.listdir(cache / "wav")) == ["m01ae.wav", "m02ae.wav"]
    assert server.hits == ["/gone.zip", "/men.zip", "/m02ae.wav"]
    download.ensure_all(files, cache, archives=[archive])
    assert len(server.hits) == 3


def test_unusable_archive_and_file_urls_are_all_reported(server, cache):
    (server.root / "men.zip").write_bytes(b"not a zip")
    file = RemoteFile("wav/m01ae.wav", sha(b"one"), (server.url + "m01ae.wav",))
    archive = RemoteArchive((server.url + "gone.zip", server.url + "men.zip"), "m*.wav")
    with pytest.raises(DownloadError) as info:
        download.ensure_all([file], cache, archives=[archive])
    message = str(info.value)
    for url in (server.url + "m01ae.wav", server.url + "gone.zip", server.url + "men.zip"):
        assert url in message
    assert "File is not a zip file" in message and str(cache / "wav") in message


def test_mnist_downloads_once_from_a_mirror(server, tmp_path, shared_data_session, monkeypatch):
    for name in data._IDX_SHA256["mnist"]:
        shutil.copy(shared_data_session / "mnist" / name, server.root / name)
    monkeypatch.setitem(data._IDX_SOURCES, "mnist", (server.url + "offline/", server.url))
    root = tmp_path / "data"
    ds = data.load("mnist", root=root)
    assert ds.x_train.shape == (60000, 784) and ds.y_test.shape == (10000,)
    assert sorted(os.listdir(root / "mnist")) == sorted(data._IDX_SHA256["mnist"])
    assert len(server.hits) == 8  # 4 files, each tried on the dead mirror first
    data.load("mnist", root=root)
    assert len(server.hits) == 8


def test_vowels_download_formants_and_extract_recordings_from_the_archive(
        server, tmp_path, shared_data_session, monkeypatch):
    shared = shared_data_session / "vowels_hillenbrand"
    shutil.copy(shared / "formants" / "vowdata.dat", server.root / "vowdata.dat")
    men = sorted(p.name for p in (shared / "wav").glob("m*.wav"))
    _zip(server.root / "men.zip", {f"men/{n}": (shared / "wav" / n).read_bytes() for n in men})
    vowdata = data._VOWDATA
    monkeypatch.setattr(data, "_VOWDATA", RemoteFile(
        vowdata.path, vowdata.sha256, (server.url + "gone.dat", server.url + "vowdata.dat")))
    monkeypatch.setitem(data._WAV_ARCHIVES, "m",
                        RemoteArchive((server.url + "men.zip",), "m*.wav"))
    monkeypatch.setattr(data, "_WAVETORCH", server.url + "no-mirror/")
    root = tmp_path / "data"

    ds = data.load("vowels", classes=7, root=root)
    audio = data.load_vowel_audio(classes=7, talkers="m", root=root)
    assert ds.n_classes == 7 and audio.waveforms.shape[0] == 45 * 7
    assert server.hits == ["/gone.dat", "/vowdata.dat", "/men.zip"]
    assert len(os.listdir(root / "vowels_hillenbrand" / "wav")) == 45 * 7  # only those asked for
    again = data.load_vowel_audio(classes=7, talkers="m", root=root)
    assert torch.equal(again.waveforms, audio.waveforms) and len(server.hits) == 3
