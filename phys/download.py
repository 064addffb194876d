"""Download-and-cache of dataset files, each checked against a pinned SHA-256.

Files live under :func:`data_dir` (``$PHYS_DATA`` if set, else ``~/.cache/phys``), one folder
per dataset (``mnist/``, ``fashion_mnist/``, ``vowels_hillenbrand/``). A file already there
with its pinned checksum is used as is and never downloaded again. A missing file (or one with
the wrong checksum) is fetched from its URLs in turn, canonical source first and mirrors after,
into a temporary file beside the target; only bytes with the pinned SHA-256 are renamed into
place (:func:`phys.atomic.atomic_path`), so an interrupted or corrupted download never leaves a
file that looks valid.

Errors:
    :class:`DownloadError` (a ``RuntimeError``): no URL gave the file (offline, DNS, TLS, HTTP
    error, ...). The message names every URL tried with its error, the target path, and how
    to place the file by hand or point ``$PHYS_DATA`` at a folder that holds it.
    :class:`ChecksumError` (a ``DownloadError``): a URL gave bytes whose SHA-256 differs from
    the pinned one. The message names the file and both checksums; the bytes are discarded.

Only the standard library's :mod:`urllib` is used; :mod:`tqdm` shows progress on a terminal.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

from phys import __version__
from phys.atomic import atomic_path, write_bytes

__all__ = [
    "ENV_VAR",
    "ChecksumError",
    "DownloadError",
    "RemoteArchive",
    "RemoteFile",
    "data_dir",
    "ensure",
    "ensure_all",
    "sha256sum",
]

ENV_VAR = "PHYS_DATA"
_CHUNK = 1 << 20
_TIMEOUT_S = 60.0
_PROGRESS_MIN_BYTES = 1 << 20
_USER_AGENT = f"physnn/{__version__} (Python urllib)"

log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A dataset file could not be obtained from any of its URLs."""


class ChecksumError(DownloadError):
    """Downloaded bytes do not have the pinned SHA-256; they were not kept."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it goes, its pinned checksum and where to get it.

    Attributes:
        path: Path inside the dataset folder, ``/``-separated (``"wav/m01ae.wav"``).
        sha256: Lower-case hex SHA-256 of the exact bytes.
        urls: Sources tried in order: the canonical one first, then mirrors.
    """

    path: str
    sha256: str
    urls: tuple[str, ...]

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class RemoteArchive:
    """A zip archive that holds some :class:`RemoteFile` s, matched by base name.

    Only the wanted members are extracted, each checked against its own pinned checksum; the
    archive itself is not pinned and is deleted after use.

    Attributes:
        urls: Sources of the archive, tried in order.
        members: ``fnmatch`` pattern of the base names it holds, e.g. ``"m*.wav"``.
    """

    urls: tuple[str, ...]
    members: str


def data_dir() -> Path:
    """The root of the dataset cache: ``$PHYS_DATA`` if set, else ``~/.cache/phys``."""
    root = os.environ.get(ENV_VAR)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "phys"


def sha256sum(path: str | os.PathLike[str]) -> str:
    """Lower-case hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def ensure(file: RemoteFile, folder: str | os.PathLike[str]) -> Path:
    """Return ``folder / file.path``, downloading it first unless it is there and intact.

    Raises:
        ChecksumError: a URL served bytes with the wrong SHA-256 and no other URL worked.
        DownloadError: no URL could be read.
    """
    target = Path(folder) / file.path
    return target if _is_intact(target, file.sha256) else _fetch(file, Path(folder))


def ensure_all(
    files: Sequence[RemoteFile],
    folder: str | os.PathLike[str],
    archives: Sequence[RemoteArchive] = (),
) -> list[Path]:
    """Like :func:`ensure` for many files; missing ones come from ``archives`` when possible.

    Each archive that holds a missing file is downloaded once and its wanted members are
    extracted and verified; whatever is still missing afterwards (archive unreachable, member
    absent or with the wrong checksum) is downloaded file by file from its own URLs.

    Returns:
        The paths of ``files``, in order.
    """
    folder = Path(folder)
    missing = [f for f in files if not _is_intact(folder / f.path, f.sha256)]
    problems: list[str] = []  # why archives did not provide what they hold
    for archive in archives:
        wanted = {f.name: f for f in missing if fnmatch(f.name, archive.members)}
        if wanted:
            done = _extract_from_archive(archive, wanted, folder, problems)
            missing = [f for f in missing if f.name not in done]
    for file in _progress_over(missing, folder.name):
        try:
            _fetch(file, folder)
        except DownloadError as exc:
            if not problems:
                raise
            tried = "\n".join(f"  - {p}" for p in problems)
            raise type(exc)(
                f"{exc}\nThe archives that hold it could not be used either:\n{tried}\n"
                f"An archive downloaded by hand can also be unpacked into "
                f"{(folder / file.path).parent}."
            ) from exc
    return [folder / f.path for f in files]


def _fetch(file: RemoteFile, folder: Path) -> Path:
    """Download ``file`` from the first of its URLs that gives the pinned bytes."""
    target = folder / file.path
    failures: list[DownloadError] = []
    for url in file.urls:
        try:
            _download_verified(url, target, file.sha256)
        except DownloadError as exc:
            log.info("%s", exc)
            failures.append(exc)
        else:
            return target
    raise _give_up(file, folder, failures)


def _is_intact(path: Path, sha256: str) -> bool:
    if not path.is_file():
        return False
    actual = sha256sum(path)
    if actual != sha256:
        log.warning("%s has sha256 %s, expected %s; downloading it again", path, actual, sha256)
    return actual == sha256


def _download_verified(url: str, target: Path, sha256: str) -> None:
    """Download ``url`` beside ``target``; rename it into place only if its SHA-256 matches."""
    with atomic_path(target) as tmp:
        actual = _download(url, tmp, label=target.name)
        if actual != sha256:
            raise ChecksumError(
                f"{url} gave {target.name} with sha256 {actual}, expected {sha256}; "
                "the download was discarded"
            )


def _download(url: str, dest: Path, label: str) -> str:
    """Stream ``url`` into ``dest`` and return the SHA-256 of the bytes written."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    digest = hashlib.sha256()
    try:
        with (
            urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response,
            open(dest, "wb") as out,
            _byte_progress(response.headers.get("Content-Length"), label) as bar,
        ):
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as exc:  # URLError and HTTPError are OSErrors
        raise DownloadError(f"{url}: {_reason(exc)}") from exc
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}"


def _give_up(file: RemoteFile, folder: Path, failures: list[DownloadError]) -> DownloadError:
    target = folder / file.path
    kind = ChecksumError if any(isinstance(f, ChecksumError) for f in failures) else DownloadError
    tried = "\n".join(f"  - {f}" for f in failures) or "  (no URL is known for it)"
    return kind(
        f"could not download {file.path} to {target}:\n{tried}\n"
        f"Download it by hand from one of these URLs and place it at {target} "
        f"(sha256 {file.sha256}), or set {ENV_VAR} to a folder that holds it as "
        f"{folder.name}/{file.path}."
    )


def _extract_from_archive(archive: RemoteArchive, wanted: dict[str, RemoteFile],
                          folder: Path, problems: list[str]) -> set[str]:
    """Install the wanted members that have their pinned checksum; return their base names.

    Each source of the archive is tried until one is a readable zip; what went wrong is
    appended to ``problems``.
    """
    with tempfile.TemporaryDirectory(prefix="phys-") as tmp:
        zip_path = Path(tmp) / "archive.zip"
        for url in archive.urls:
            try:
                _download(url, zip_path, label=PurePosixPath(url).name)
                with zipfile.ZipFile(zip_path) as zf:
                    return _extract_members(zf, wanted, folder, url, problems)
            except DownloadError as exc:
                problems.append(str(exc))
            except zipfile.BadZipFile as exc:
                problems.append(f"{url}: {exc}")
    return set()


def _extract_members(zf: zipfile.ZipFile, wanted: dict[str, RemoteFile], folder: Path,
                     url: str, problems: list[str]) -> set[str]:
    done: set[str] = set()
    for info in zf.infolist():
        file = wanted.get(PurePosixPath(info.filename).name)
        if file is None or info.is_dir() or file.name in done:
            continue
        content = zf.read(info)
        actual = hashlib.sha256(content).hexdigest()
        if actual == file.sha256:
            write_bytes(folder / file.path, content)
            done.add(file.name)
        else:
            problems.append(f"{url}: {info.filename} has sha256 {actual}, "
                            f"expected {file.sha256}; not used")
    return done


def _byte_progress(content_length: str | None, label: str) -> Any:
    """A tqdm byte counter, shown on a terminal for downloads of 1 MiB and more."""
    from tqdm.auto import tqdm

    total = int(content_length) if content_length and content_length.isdigit() else None
    show = total is not None and total >= _PROGRESS_MIN_BYTES
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                leave=False, disable=None if show else True)


def _progress_over(files: list[RemoteFile], label: str) -> Iterable[RemoteFile]:
    """``files``, with a per-file progress bar on a terminal when there are several."""
    from tqdm.auto import tqdm

    return tqdm(files, desc=f"downloading {label}", unit="file", leave=False,
                disable=None if len(files) > 1 else True)
