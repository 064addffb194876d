import gzip
import struct

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from phys import data
from phys.checksums import read
from phys.download import sha256sum

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
# Tokens per vowel (VOWELS order) with all 12 formants measured, all 139 talkers.
VOWEL_COUNTS = [134, 135, 133, 139, 126, 118, 139, 124, 136, 139, 138, 136]
# Women only, VOWELS_7 order: "er" is the rarest, 37 tokens (physics-aware training's 37/class).
WOMEN_VOWEL7_COUNTS = [47, 47, 46, 48, 37, 43, 48]


def test_digits_split_is_deterministic_stratified_and_scaled():
    a, b = data.load("digits"), data.load("digits")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape == (1437, 64) and a.x_test.shape == (360, 64)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert a.n_classes == 10 and a.n_features == 64
    assert float(a.x_train.min()) == 0.0 and float(a.x_train.max()) == 1.0
    counts = torch.bincount(a.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    # no sample is in both splits
    train_rows = {tuple(r) for r in a.x_train.tolist()}
    overlap = sum(tuple(r) in train_rows for r in a.x_test.tolist())
    assert overlap <= 2  # the digits set holds a few exact duplicate images


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*digits"):
        data.load("nope")
    assert "digits" in data.names()


def test_names_and_unknown_options():
    assert data.names() == ["digits", "fashion_mnist", "mnist", "vowels"]
    with pytest.raises(TypeError, match="'mnist' has no option 'colour'; its options: flatten"):
        data.load("mnist", colour=True)


# --- MNIST and Fashion-MNIST (read from the shared copies; loaded once per module) -----------

@pytest.fixture(scope="module")
def mnist(shared_data_session):
    return data.load("mnist", root=shared_data_session)


@pytest.fixture(scope="module")
def fashion_images(shared_data_session):
    return data.load("fashion_mnist", flatten=False, root=shared_data_session)


def test_mnist_shapes_dtypes_labels_and_class_counts(mnist):
    assert mnist.x_train.shape == (60000, 784) and mnist.x_test.shape == (10000, 784)
    assert mnist.x_train.dtype == torch.float32 and mnist.y_train.dtype == torch.int64
    assert mnist.n_classes == 10 and mnist.n_features == 784
    assert float(mnist.x_train.min()) == 0.0 and float(mnist.x_train.max()) == 1.0
    assert torch.bincount(mnist.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(mnist.y_test).tolist() == MNIST_TEST_COUNTS
    assert mnist.y_train[:3].tolist() == [5, 0, 4] and mnist.y_test[:3].tolist() == [7, 2, 1]
    assert float(mnist.x_train[0].reshape(28, 28)[:4].sum()) == 0.0  # blank top rows


def test_fashion_mnist_images_are_balanced(fashion_images, shared_data_session):
    ds = fashion_images
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.n_features == 784
    assert 0.0 <= float(ds.x_test.min()) and float(ds.x_test.max()) <= 1.0
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.y_train[0] == 9 and ds.y_test[0] == 9  # ankle boots
    flat = data.load("fashion_mnist", root=shared_data_session)
    assert torch.equal(flat.x_test, ds.x_test.reshape(10000, 784))
    assert torch.equal(flat.y_train, ds.y_train)


def _sha256sums(path):
    return {name.removeprefix("./"): sha
            for sha, name in (line.split() for line in path.read_text().splitlines())}


def test_pinned_checksums_are_the_shared_sha256sums(shared_data_session):
    for name in ("mnist", "fashion_mnist"):
        assert data._IDX_SHA256[name] == _sha256sums(shared_data_session / name / "SHA256SUMS")
    vowels = _sha256sums(shared_data_session / "vowels_hillenbrand" / "SHA256SUMS")
    assert vowels[data._VOWDATA.path] == data._VOWDATA.sha256
    wavs = {k.removeprefix("wav/"): v for k, v in vowels.items() if k.startswith("wav/")}
    pinned = read("hillenbrand_wav.sha256")
    assert wavs == pinned and len(pinned) == 1116


def test_shared_files_have_the_pinned_checksums(shared_data_session):
    pinned = {f"{name}/{file}": sha for name, files in data._IDX_SHA256.items()
              for file, sha in files.items()}
    pinned[f"vowels_hillenbrand/{data._VOWDATA.path}"] = data._VOWDATA.sha256
    wav = read("hillenbrand_wav.sha256")
    pinned.update({f"vowels_hillenbrand/wav/{n}": sha for n, sha in wav.items()})
    bad = [p for p, sha in pinned.items() if sha256sum(shared_data_session / p) != sha]
    assert bad == []


# --- IDX parser ------------------------------------------------------------------------------

def _idx_bytes(array, type_code):
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path, suffix):
    values = np.arange(-3, 3, dtype=">i2").reshape(2, 3)
    raw = _idx_bytes(values, 0x0B)
    path = tmp_path / f"small-idx2-short{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    out = data.read_idx(path)
    assert out.dtype == np.int16 and out.dtype.isnative and out.flags.writeable
    assert out.tolist() == values.tolist()


GOOD = _idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4), 0x08)


@pytest.mark.parametrize("content, message", [
    (b"", "not an IDX file"),
    (b"\x01\x00" + GOOD[2:], "not an IDX file"),              # bad magic
    (GOOD[:2] + b"\x07" + GOOD[3:], "not an IDX file"),        # unknown type code
    (GOOD[:3] + b"\x00" + GOOD[4:], "not an IDX file"),        # zero dimensions
    (GOOD[:6], "truncated IDX header"),
    (GOOD[:-1], r"truncated: the header promises shape \(3, 4\)"),
    (GOOD + b"\x00", "trailing bytes"),
])
def test_read_idx_rejects_malformed_files_naming_them(tmp_path, content, message):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_a_truncated_gzip_copy_of_real_labels(tmp_path, shared_data_session):
    real = (shared_data_session / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(real[: len(real) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated gzip") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)
    path.write_bytes(gzip.compress(gzip.decompress(real)[:6]))  # gzip fine, IDX header cut
    with pytest.raises(ValueError, match="truncated IDX header"):
        data.read_idx(path)


# --- Hillenbrand vowels: formant features ------------------------------------------------------

@pytest.fixture(scope="module")
def vowels(shared_data_session):
    return data.load("vowels", root=shared_data_session)


def test_vowels_feature_table_classes_and_scaling(vowels):
    assert vowels.n_classes == 12 and vowels.n_features == 12
    assert len(vowels.y_train) + len(vowels.y_test) == sum(VOWEL_COUNTS) == 1597
    assert vowels.x_train.dtype == torch.float32 and vowels.y_train.dtype == torch.int64
    counts = torch.bincount(vowels.y_train, minlength=12) + torch.bincount(vowels.y_test)
    assert counts.tolist() == VOWEL_COUNTS
    test_counts = torch.bincount(vowels.y_test, minlength=12)
    assert (test_counts - torch.tensor(VOWEL_COUNTS) * 0.2).abs().max() <= 1  # stratified
    assert vowels.x_train.min(0).values.tolist() == [0.0] * 12
    assert vowels.x_train.max(0).values.tolist() == [1.0] * 12
    assert float(vowels.x_test.min()) >= 0.0 and float(vowels.x_test.max()) <= 1.0


def test_vowels_split_is_seeded(vowels, shared_data_session):
    again = data.load("vowels", root=shared_data_session)
    assert torch.equal(again.x_train, vowels.x_train) and torch.equal(again.y_test, vowels.y_test)
    other = data.load("vowels", seed=1, root=shared_data_session)
    assert not torch.equal(other.y_train, vowels.y_train)


def test_vowels_seven_classes_of_women(shared_data_session):
    ds = data.load("vowels", classes=7, talkers="w", root=shared_data_session)
    assert ds.n_classes == 7 and data.VOWELS_7 == ("ae", "ah", "aw", "uw", "er", "iy", "ih")
    counts = torch.bincount(ds.y_train, minlength=7) + torch.bincount(ds.y_test, minlength=7)
    assert counts.tolist() == WOMEN_VOWEL7_COUNTS


def test_vowels_raw_hz_drop_unmeasurable_and_standard_scaling(shared_data_session):
    raw = data.load("vowels", scale=None, root=shared_data_session)
    x = torch.cat([raw.x_train, raw.x_test])
    assert float(x.min()) > 0  # tokens with a formant that was not measurable are dropped
    f1, f2, f3 = x[:, 0::3], x[:, 1::3], x[:, 2::3]  # F1 < F2 < F3 at every time point
    assert bool((f1 < f2).all()) and bool((f2 < f3).all())
    z = data.load("vowels", scale="standard", root=shared_data_session)
    assert torch.allclose(z.x_train.mean(0), torch.zeros(12), atol=1e-5)
    assert torch.allclose(z.x_train.std(0, unbiased=False), torch.ones(12), atol=1e-5)


@pytest.mark.parametrize("options, message", [
    ({"classes": 5}, "classes must be 12 or 7"),
    ({"talkers": "mx"}, "talkers must be"),
    ({"talkers": ""}, "talkers must be"),
    ({"scale": "log"}, "scale must be"),
])
def test_vowels_bad_options(shared_data_session, options, message):
    with pytest.raises(ValueError, match=message):
        data.load("vowels", root=shared_data_session, **options)


def test_load_finds_files_through_phys_data(monkeypatch, shared_data_session, vowels):
    monkeypatch.setenv("PHYS_DATA", str(shared_data_session))
    assert torch.equal(data.load("vowels").x_train, vowels.x_train)


# --- Hillenbrand vowels: recordings ------------------------------------------------------------

def test_vowel_audio_all_recordings(shared_data_session):
    audio = data.load_vowel_audio(root=shared_data_session)
    assert audio.waveforms.shape == (1116, 13737) and audio.waveforms.dtype == torch.float32
    assert audio.rate == 16000 and audio.classes == data.VOWELS
    assert torch.bincount(audio.labels).tolist() == [93] * 12
    assert len(set(audio.speakers)) == 93 and audio.tokens[0] == "m01ae"
    assert int(audio.lengths.min()) == 5274 and int(audio.lengths.max()) == 13737
    rate, pcm = wavfile.read(shared_data_session / "vowels_hillenbrand" / "wav" / "m01ae.wav")
    assert torch.equal(audio.waveforms[0, : len(pcm)], torch.from_numpy(pcm / 32768.0).float())
    assert float(audio.waveforms[0, len(pcm):].abs().sum()) == 0.0  # zero-padded
    assert float(audio.waveforms.min()) >= -1.0 and float(audio.waveforms.max()) < 1.0


def test_vowel_audio_resampled_cut_and_normalised(shared_data_session):
    audio = data.load_vowel_audio(classes=7, talkers="w", rate=8000, length=4000,
                                  normalize=True, root=shared_data_session)
    assert audio.waveforms.shape == (48 * 7, 4000) and audio.rate == 8000
    assert audio.speakers == tuple(t[:3] for t in audio.tokens)
    assert {s[0] for s in audio.speakers} == {"w"} and len(set(audio.speakers)) == 48
    assert torch.allclose(audio.waveforms.abs().max(1).values, torch.ones(48 * 7))
    assert 5274 // 2 <= int(audio.lengths.min()) and int(audio.lengths.max()) <= 13737 // 2 + 1
    with pytest.raises(ValueError, match="talkers must be"):
        data.load_vowel_audio(talkers="b", root=shared_data_session)
