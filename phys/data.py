"""Datasets: ``phys.data.load(name, **options)`` returns train and test tensors.

- ``digits`` (the default): scikit-learn's bundled 8x8 digits, 1,797 images, no download.
  Options: ``test_fraction``, ``seed``.
- ``mnist``: MNIST handwritten digits, 60,000 train + 10,000 test 28x28 images.
  Options: ``flatten``, ``root``.
- ``fashion_mnist``: Fashion-MNIST clothing images, same sizes and options as ``mnist``.
- ``vowels``: Hillenbrand et al. (1995) vowels, 12 formant features, 12 or 7 vowels.
  Options: ``classes``, ``talkers``, ``scale``, ``test_fraction``, ``seed``, ``root``.

:func:`load_vowel_audio` gives the raw Hillenbrand recordings as waveforms, for wave simulators.
:func:`acoustic_recordings` gives the folder of the PhyLL acoustic cavity's measurements
(``phys.open("recorded:phyll_acoustic")`` opens a device fitted to them).

Files are downloaded on first use into ``root`` (default :func:`phys.download.data_dir`:
``$PHYS_DATA``, else ``~/.cache/phys``), checked against SHA-256 checksums pinned here, and
never downloaded again; see :mod:`phys.download` for the errors raised when that fails.

Sources and terms:
    - MNIST: Y. LeCun, C. Cortes, C. J. C. Burges, original IDX files (via the mirror that
      torchvision uses). Commonly cited as CC BY-SA 3.0.
    - Fashion-MNIST: H. Xiao, K. Rasul, R. Vollgraf (2017), Zalando Research. MIT licence.
    - Vowels: J. Hillenbrand, L. A. Getty, M. J. Clark, K. Wheeler (1995), "Acoustic
      characteristics of American English vowels", JASA 97(5):3099-3111. (c) 1995 James
      Hillenbrand, given free for research from the author's page, with no licence to
      redistribute: physnn downloads the files for each user and never ships them. Cite the
      paper.
    - Acoustic cavity: A. Momeni, B. Rahmani, M. Mallejac, P. del Hougne, R. Fleury (2023),
      "Backpropagation-free training of deep physical neural networks", Science 382:1297;
      their measurements from github.com/MomeniAli/PhyLL. MIT licence.
"""

from __future__ import annotations

import dataclasses
import gzip
import inspect
import math
import os
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from phys.download import RemoteArchive, RemoteFile, data_dir, ensure, ensure_all

if TYPE_CHECKING:
    import numpy as np
    import torch

    # Fits on the train features, returns (scaled train, scaled test).
    Scaler = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

__all__ = [
    "VOWELS",
    "VOWELS_7",
    "VOWEL_FEATURES",
    "Dataset",
    "VowelAudio",
    "acoustic_recordings",
    "load",
    "load_vowel_audio",
    "names",
    "read_idx",
]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Dataset:
    """A classification dataset split into train and test.

    Shape:
        - ``x_train``: ``(N_train, n_features)`` float32; for ``mnist`` and ``fashion_mnist``
          with ``flatten=False``, ``(N_train, 1, 28, 28)`` images. Features are scaled to
          ``[0, 1]`` (``vowels`` with ``scale="standard"`` or ``None`` excepted).
        - ``y_train``: ``(N_train,)`` int64 labels in ``0 .. n_classes - 1``.
        - ``x_test``, ``y_test``: likewise for the test split.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int

    @property
    def n_features(self) -> int:
        """Values per sample: ``x_train.shape[1]``, or ``1 * 28 * 28`` for images."""
        return math.prod(self.x_train.shape[1:])

    def subset(self, samples: int, seed: int = 0) -> Dataset:
        """The same dataset with a fixed random subset of ``samples`` training samples
        (drawn by ``torch.randperm`` seeded ``seed``, kept in their original order); the
        test split is unchanged.

        Examples::

            >>> load("digits").subset(100).x_train.shape
            torch.Size([100, 64])
        """
        import torch

        n = len(self.y_train)
        if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= n:
            raise ValueError(f"subset must be an int in 1..{n} (the training samples of "
                             f"{self.name}), got {samples!r}")
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:samples]
        pick = pick.sort().values
        return dataclasses.replace(self, x_train=self.x_train[pick], y_train=self.y_train[pick])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
                f"features={self.n_features}, classes={self.n_classes})")


# --- digits (embedded) -----------------------------------------------------------------------

def _digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn digits: 64 pixels in 0..16 scaled to [0, 1]; stratified split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _split_dataset("digits", bunch.data / 16.0, bunch.target, 10, test_fraction, seed)


def _split_dataset(name: str, x: np.ndarray, y: np.ndarray, n_classes: int,
                   test_fraction: float, seed: int, scale: Scaler | None = None) -> Dataset:
    """Seeded stratified train/test split; ``scale`` (fitted on train) is applied after it."""
    import torch
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y,
    )
    if scale is not None:
        x_tr, x_te = scale(x_tr, x_te)
    x_tr, x_te = (torch.as_tensor(a, dtype=torch.float32) for a in (x_tr, x_te))
    y_tr, y_te = (torch.as_tensor(a, dtype=torch.int64) for a in (y_tr, y_te))
    return Dataset(name, x_tr, y_tr, x_te, y_te, n_classes=n_classes)


# --- IDX files: MNIST and Fashion-MNIST ------------------------------------------------------

_IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# Canonical 60k/10k split: (images, labels) file names.
_IDX_SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# Sources, tried in order, and the pinned SHA-256 of each file.
_IDX_SOURCES: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion_mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/"
        "b2617bb6d3ffa2e429640350f613e3291e10b141/data/fashion/",
    ),
}
_IDX_SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz":
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz":
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz":
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz":
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz":
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz":
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz":
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz":
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed if its name ends in ``.gz``.

    Layout: two zero bytes, a type code (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16,
    ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64) and the number of dimensions ``d``;
    then ``d`` big-endian uint32 sizes; then the values, big-endian, in C order.

    Returns:
        A new array with those sizes as shape, in native byte order.

    Raises:
        ValueError: naming the file, if the magic number or type code is wrong, the header or
            data is shorter than the header promises, bytes follow the data, or the gzip
            stream is corrupt.
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            return _parse_idx(fh, path)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc


def _parse_idx(fh: BinaryIO, path: Path) -> np.ndarray:
    import numpy as np

    magic = fh.read(4)
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in _IDX_TYPES or magic[3] == 0:
        raise ValueError(f"{path}: not an IDX file (magic number {magic.hex() or 'missing'}; "
                         "expected 0000, a type code and the number of dimensions)")
    dtype, ndim = np.dtype(_IDX_TYPES[magic[2]]), magic[3]
    header = fh.read(4 * ndim)
    if len(header) < 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions promised, "
                         f"{len(header) // 4} present)")
    shape = struct.unpack(f">{ndim}I", header)
    payload = fh.read()
    expected = math.prod(shape) * dtype.itemsize
    if len(payload) != expected:
        problem = "truncated" if len(payload) < expected else "trailing bytes"
        raise ValueError(f"{path}: {problem}: the header promises shape {shape} "
                         f"({expected} bytes of data), the file holds {len(payload)}")
    return np.frombuffer(payload, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _mnist(flatten: bool = True, root: PathLike | None = None) -> Dataset:
    """MNIST handwritten digits, canonical 60k/10k split; see :func:`_idx_dataset`."""
    return _idx_dataset("mnist", flatten, root)


def _fashion_mnist(flatten: bool = True, root: PathLike | None = None) -> Dataset:
    """Fashion-MNIST (Zalando), canonical 60k/10k split; see :func:`_idx_dataset`."""
    return _idx_dataset("fashion_mnist", flatten, root)


def _idx_dataset(name: str, flatten: bool, root: PathLike | None) -> Dataset:
    """Download (once) and read an MNIST-format dataset.

    ``x``: float32 pixels in ``[0, 1]`` (uint8 / 255), ``(N, 784)`` row-major if ``flatten``
    else ``(N, 1, 28, 28)``; ``y``: int64 in ``0 .. 9``; N = 60,000 train, 10,000 test.
    """
    folder = _folder(name, root)
    files = [RemoteFile(fname, sha, tuple(base + fname for base in _IDX_SOURCES[name]))
             for fname, sha in _IDX_SHA256[name].items()]
    ensure_all(files, folder)
    (x_tr, y_tr), (x_te, y_te) = (_read_idx_split(folder, *_IDX_SPLITS[s], flatten)
                                  for s in ("train", "test"))
    return Dataset(name, x_tr, y_tr, x_te, y_te, n_classes=10)


def _read_idx_split(folder: Path, images_name: str, labels_name: str,
                    flatten: bool) -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np
    import torch

    images_path, labels_path = folder / images_name, folder / labels_name
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{images_path}: expected uint8 images of shape (N, 28, 28), "
                         f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1] or labels.max() > 9:
        raise ValueError(f"{labels_path}: expected {len(images)} uint8 labels in 0..9, "
                         f"got {labels.dtype} {labels.shape} (max {labels.max()})")
    x = torch.from_numpy(images).to(torch.float32).div_(255.0)
    x = x.reshape(len(x), -1) if flatten else x.unsqueeze(1)
    return x, torch.from_numpy(labels).to(torch.int64)


# --- Hillenbrand et al. (1995) vowels ---------------------------------------------------------

VOWELS = ("ae", "ah", "aw", "eh", "ei", "er", "ih", "iy", "oa", "oo", "uh", "uw")
"""The 12 vowels, as the author codes them, in label order (``classes=12``): the vowels of
had, hod, hawed, head, hayed, heard, hid, heed, hoed, hood, hud, who'd."""

VOWELS_7 = ("ae", "ah", "aw", "uw", "er", "iy", "ih")
"""The 7 vowels of ``classes=7``, in label order: those of the vowel task of physics-aware
training (Wright et al., Nature 2022; its public code's dataset holds women's tokens with
all 12 formant features measured, 37 per vowel), which the public PhyLL reimplementation's
7-class task (37 tokens per class, 206 train / 52 test) appears to reuse."""

VOWEL_FEATURES = tuple(f"F{k}@{t}" for t in ("steady", "20%", "50%", "80%") for k in (1, 2, 3))
"""The 12 features, in column order: F1-F3 (Hz) at the steady state, then at 20, 50 and 80 %
of the vowel's duration."""

_VOWEL_DATASET = "vowels_hillenbrand"
_VOWEL_PAGE = "https://homepages.wmich.edu/~hillenbr/voweldata/"
_WAYBACK = "https://web.archive.org/web/2023id_/"
_VOWDATA = RemoteFile(
    "formants/vowdata.dat",
    "05a4a69e2c6b0f444077245b1427d12bc86f8d7a32ae7a4b63f7e06e5712e4b1",
    (
        _VOWEL_PAGE + "vowdata.dat",
        _WAYBACK + _VOWEL_PAGE + "vowdata.dat",
        "https://raw.githubusercontent.com/kleinschmidt/hdp-bayes-vowels/"
        "0787a1ab4007217f0ad2a756e0d1c4385f676fd2/hillenbrand-data/vowdata.dat",
    ),
)
# vowdata.dat columns (0-based after the token name): duration, f0, F1-F4 steady state,
# F1-F3 at 20 %, F1-F3 at 50 %, F1-F3 at 80 %. 0 means "not measurable".
_VOWDATA_COLUMNS = 15
_FEATURE_COLUMNS = [2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14]
_TOKEN = re.compile(r"^([mwbg])(\d\d)([a-z]{2})$")


def _vowels(classes: int = 12, talkers: str = "mwbg", scale: str | None = "minmax",
            test_fraction: float = 0.2, seed: int = 0,
            root: PathLike | None = None) -> Dataset:
    """Hillenbrand et al. (1995) vowels from their measured formants.

    Args:
        classes: 12 (:data:`VOWELS`) or 7 (:data:`VOWELS_7`).
        talkers: Any of ``m`` (45 men), ``w`` (48 women), ``b`` (27 boys), ``g`` (19 girls).
        scale: ``"minmax"``: each feature mapped to ``[0, 1]`` by the train split's min and
            max, test values clipped to ``[0, 1]``; ``"standard"``: z-scored with the train
            split's mean and standard deviation; ``None``: raw Hz.
        test_fraction, seed: Stratified split by vowel, seeded. Tokens are split, not
            talkers: a talker's other vowels can be in the other split.
        root: Data folder (default :func:`phys.download.data_dir`).

    ``x``: float32 ``(N, 12)``, :data:`VOWEL_FEATURES`; ``y``: int64 vowel index. Tokens with
    any of the 12 formants not measurable (0 in the table: 71 of 1,668, mostly F3) are
    dropped, leaving 1,597 for all 12 vowels and talkers.
    """
    import numpy as np

    codes = _vowel_codes(classes)
    _check_talkers(talkers, "mwbg")
    tokens, table = _read_vowdata(ensure(_VOWDATA, _folder(_VOWEL_DATASET, root)))
    x = table[:, _FEATURE_COLUMNS].astype(np.float64)
    vowel, talker = np.array([t[3:] for t in tokens]), np.array([t[0] for t in tokens])
    keep = np.isin(vowel, codes) & np.isin(talker, list(talkers)) & (x > 0).all(axis=1)
    y = np.array([codes.index(v) for v in vowel[keep]], dtype=np.int64)
    return _split_dataset("vowels", x[keep], y, len(codes), test_fraction, seed,
                          scale=_scaler(scale))


def _vowel_codes(classes: int) -> tuple[str, ...]:
    by_count = {len(VOWELS): VOWELS, len(VOWELS_7): VOWELS_7}
    if classes not in by_count:
        raise ValueError(f"classes must be 12 or 7, got {classes!r}")
    return by_count[classes]


def _check_talkers(talkers: str, allowed: str) -> None:
    if not talkers or not set(talkers) <= set(allowed):
        raise ValueError(f"talkers must be a non-empty string of {', '.join(allowed)}, "
                         f"got {talkers!r}")


def _read_vowdata(path: Path) -> tuple[list[str], np.ndarray]:
    """Token names (``"m01ae"``) and their ``(N, 15)`` int64 measurements from vowdata.dat."""
    import numpy as np

    tokens, rows = [], []
    for lineno, line in enumerate(path.read_text(encoding="ascii").splitlines(), 1):
        fields = line.split()
        if not fields or not _TOKEN.match(fields[0]):
            continue  # header text
        if len(fields) != 1 + _VOWDATA_COLUMNS or not all(f.isdigit() for f in fields[1:]):
            raise ValueError(f"{path}:{lineno}: expected a token name and "
                             f"{_VOWDATA_COLUMNS} integers, got {line!r}")
        tokens.append(fields[0])
        rows.append([int(f) for f in fields[1:]])
    if not tokens:
        raise ValueError(f"{path}: no vowel tokens found")
    return tokens, np.array(rows, dtype=np.int64)


def _scaler(scale: str | None) -> Scaler | None:
    if scale is None:
        return None
    if scale == "minmax":
        def minmax(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            lo, span = train.min(axis=0), train.max(axis=0) - train.min(axis=0)
            return (train - lo) / span, ((test - lo) / span).clip(0.0, 1.0)
        return minmax
    if scale == "standard":
        def standard(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            mean, std = train.mean(axis=0), train.std(axis=0)
            return (train - mean) / std, (test - mean) / std
        return standard
    raise ValueError(f"scale must be 'minmax', 'standard' or None, got {scale!r}")


# --- Hillenbrand recordings -------------------------------------------------------------------

_WAV_RATE = 16_000
_WAVETORCH = ("https://raw.githubusercontent.com/fancompute/wavetorch/"
              "927ad02dc9db83f72b8df1d91418a6681e60fd56/data/vowels/")
_WAV_ARCHIVES = {
    talker: RemoteArchive((_VOWEL_PAGE + zip_name, _WAYBACK + _VOWEL_PAGE + zip_name),
                          f"{talker}*.wav")
    for talker, zip_name in (("m", "men.zip"), ("w", "women.zip"))
}


@dataclass(frozen=True)
class VowelAudio:
    """Hillenbrand et al. (1995) /hVd/ recordings as equal-length waveforms.

    Attributes:
        waveforms: ``(N, T)`` float32, 16-bit PCM divided by 32768 (so in ``[-1, 1)``), or
            each divided by its peak if ``normalize``; cut or zero-padded at the end to
            ``T`` samples.
        labels: ``(N,)`` int64, index into ``classes``.
        lengths: ``(N,)`` int64, each recording's length in samples before cutting/padding.
        speakers: ``N`` talker ids (``"m01"``, ``"w23"``).
        tokens: ``N`` recording names (``"m01ae"``), sorted.
        classes: the vowel codes, in label order.
        rate: sample rate in Hz.
    """

    waveforms: torch.Tensor
    labels: torch.Tensor
    lengths: torch.Tensor
    speakers: tuple[str, ...]
    tokens: tuple[str, ...]
    classes: tuple[str, ...]
    rate: int

    def __repr__(self) -> str:
        return (f"VowelAudio({len(self.tokens)} recordings x {self.waveforms.shape[1]} samples "
                f"at {self.rate} Hz, classes={len(self.classes)})")


def load_vowel_audio(*, classes: int = 12, talkers: str = "mw", rate: int = _WAV_RATE,
                     length: int | None = None, normalize: bool = False,
                     root: PathLike | None = None) -> VowelAudio:
    """The Hillenbrand et al. (1995) recordings of men and women, for wave simulations.

    The 16 kHz mono recordings (45 men and 48 women x 12 vowels = 1,116; 0.33-0.86 s) are
    downloaded once (the author's ``men.zip``/``women.zip``, else a per-file mirror) and
    each checked against its pinned SHA-256.

    Args:
        classes: 12 (:data:`VOWELS`) or 7 (:data:`VOWELS_7`).
        talkers: ``"m"``, ``"w"`` or ``"mw"``; the children's recordings are not included.
        rate: Output sample rate in Hz; other than 16,000 resamples with
            :func:`scipy.signal.resample_poly` (polyphase, anti-aliased).
        length: Samples per waveform at ``rate``; default: the longest selected recording.
        normalize: Divide each waveform by its peak absolute value.
        root: Data folder (default :func:`phys.download.data_dir`).

    Raises:
        ValueError: bad options, or a file that is not 16 kHz mono 16-bit PCM.
    """
    import numpy as np
    import torch

    from phys.checksums import read

    wav_sha256 = read("hillenbrand_wav.sha256")

    codes = _vowel_codes(classes)
    _check_talkers(talkers, "mw")
    if rate <= 0 or (length is not None and length <= 0):
        raise ValueError(f"rate and length must be positive, got {rate!r} and {length!r}")
    names = sorted(n for n in wav_sha256 if n[0] in talkers and n[3:5] in codes)
    files = [RemoteFile(f"wav/{n}", wav_sha256[n], (_WAVETORCH + n,)) for n in names]
    paths = ensure_all(files, _folder(_VOWEL_DATASET, root),
                       archives=[_WAV_ARCHIVES[t] for t in "mw" if t in talkers])
    signals = [_read_wav(p, rate) for p in paths]
    lengths = np.array([len(s) for s in signals], dtype=np.int64)
    waveforms = np.zeros((len(signals), length or int(lengths.max())), dtype=np.float32)
    for row, signal in zip(waveforms, signals, strict=True):
        n = min(len(signal), len(row))
        row[:n] = signal[:n]
        if normalize:
            row /= max(float(np.abs(row).max()), np.finfo(np.float32).tiny)
    tokens = tuple(n.removesuffix(".wav") for n in names)
    return VowelAudio(
        waveforms=torch.from_numpy(waveforms),
        labels=torch.tensor([codes.index(t[3:5]) for t in tokens], dtype=torch.int64),
        lengths=torch.from_numpy(lengths),
        speakers=tuple(t[:3] for t in tokens),
        tokens=tokens,
        classes=codes,
        rate=rate,
    )


def _read_wav(path: Path, rate: int) -> np.ndarray:
    """One recording as float32 in [-1, 1), resampled from 16 kHz to ``rate``."""
    import numpy as np
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    file_rate, pcm = wavfile.read(path)
    if file_rate != _WAV_RATE or pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError(f"{path}: expected 16 kHz mono 16-bit PCM, got {file_rate} Hz "
                         f"{pcm.dtype} with shape {pcm.shape}")
    signal = pcm.astype(np.float32) / 32768.0
    if rate != _WAV_RATE:
        g = math.gcd(rate, _WAV_RATE)
        signal = resample_poly(signal, rate // g, _WAV_RATE // g).astype(np.float32)
    return signal


# --- the PhyLL acoustic cavity's measurements ---------------------------------------------------

ACOUSTIC_DATASET = "phyll_acoustic"
_PHYLL = ("https://raw.githubusercontent.com/MomeniAli/PhyLL/"
          "e10480b47e1349c54b42aa659314276b3c24d92c/")
_ACOUSTIC_URLS = {"x_data.csv": _PHYLL + "Experimental%20Data/Acoustic/x_data.csv",
                  "y_data.csv": _PHYLL + "Experimental%20Data/Acoustic/y_data.csv",
                  "LICENSE": _PHYLL + "LICENSE"}


def acoustic_recordings(root: PathLike | None = None) -> Path:
    """The folder of the experimental acoustic cavity's measurements (Momeni et al. 2023):
    ``x_data.csv`` (10,000 random inputs of 20 values in [0, 1], after a header line of
    zeros), ``y_data.csv`` (the 20 values measured for each) and the ``LICENSE`` (MIT).
    Downloaded on first use into ``root / "phyll_acoustic"`` (default
    :func:`phys.download.data_dir`), each file checked against its pinned SHA-256.

    Raises:
        phys.download.DownloadError: a file is missing and could not be downloaded.
    """
    from phys.checksums import read

    pinned = read("phyll_acoustic.sha256")
    folder = _folder(ACOUSTIC_DATASET, root)
    ensure_all([RemoteFile(n, pinned[n], (_ACOUSTIC_URLS[n],)) for n in sorted(pinned)],
               folder)
    return folder


# --- registry -----------------------------------------------------------------------------------

def _folder(dataset: str, root: PathLike | None) -> Path:
    return (Path(root) if root is not None else data_dir()) / dataset


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": _digits,
    "fashion_mnist": _fashion_mnist,
    "mnist": _mnist,
    "vowels": _vowels,
}


def names() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(_LOADERS)


def load(name: str, **options: Any) -> Dataset:
    """Load a dataset by name with its fixed, deterministic train/test split.

    Args:
        name: One of :func:`names`.
        **options: Dataset-specific options (see the module docstring), e.g.
            ``load("mnist", flatten=False)`` or ``load("vowels", classes=7)``.

    Raises:
        ValueError: unknown name (the message lists the known ones) or a bad option value.
        TypeError: an option the dataset does not have (the message lists its options).
        phys.download.DownloadError: a file is missing and could not be downloaded.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(names())}")
    loader = _LOADERS[name]
    accepted = list(inspect.signature(loader).parameters)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"dataset {name!r} has no option {', '.join(map(repr, unknown))}; "
                        f"its options: {', '.join(accepted)}")
    return loader(**options)
