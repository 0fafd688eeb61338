"""Image datasets with checksums: MNIST, Fashion-MNIST, CIFAR-10 and scikit-learn's digits.

Every loader returns ``(images, labels)``: images float32 in [0, 1], either
flattened ``[N, C·H·W]`` (``flatten=True``, the MLP's input) or ``[N, C, H, W]``;
labels int64 ``[N]``.

Where the files come from:

- ``mnist`` / ``cifar10``: ``root`` (default ``$CREDITLAB_DATA/<name>``,
  ``$CREDITLAB_DATA`` defaulting to ``~/.cache/creditlab``); with
  ``download=True`` missing files are fetched from the canonical sources.
- ``fashion_mnist``: ``root``, else the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), else the
  cache (downloadable from Zalando's server).
- ``digits``: scikit-learn's bundled 8 × 8 digits (Alpaydin & Kaynak 1998).

Checksums: a ``SHA256SUMS`` file next to the data (as the 10 000-digit
MNIST subset ships) is authoritative; otherwise files are checked against
the published checksums of the canonical distributions.  A mismatch, a
truncated file or a malformed header raises :class:`DatasetError` naming the
file (and the expected checksum); ``verify=False`` skips the checksums of a
deliberately different copy but never the format checks.  Downloads go to a
temporary file in the target folder and are renamed into place only after
their checksum matches, so no half-written file is ever left behind.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .. import _checks

#: published checksums of the canonical files, as (algorithm, hex digest) pairs
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": (("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),),
    "train-labels-idx1-ubyte.gz": (("md5", "d53e105ee54ea40749a09fcbcd1e9432"),),
    "t10k-images-idx3-ubyte.gz": (("md5", "9fb629c4189551a2d022fa330f9573f3"),),
    "t10k-labels-idx1-ubyte.gz": (("md5", "ec29112dd5afa0611ce80d1b7f02629c"),),
}
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/")

#: Zalando's files, and the Debian package's recompressed copies of the same data
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": (
        ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("sha256", "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7")),
    "train-labels-idx1-ubyte.gz": (
        ("md5", "25c81989df183df01b3e8a0aad5dffbe"),
        ("sha256", "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056")),
    "t10k-images-idx3-ubyte.gz": (
        ("md5", "bef4ecab320f06d8554ea6380940ec79"),
        ("sha256", "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa")),
    "t10k-labels-idx1-ubyte.gz": (
        ("md5", "bb300cfdad3c16e7a12a480ee83cd310"),
        ("sha256", "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05")),
}
FASHION_MNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
FASHION_MNIST_SYSTEM_PATH = Path("/usr/share/datasets/fashion-mnist")

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = {
    "data_batch_1": (("md5", "c99cafc152244af753f735de768cd75f"),),
    "data_batch_2": (("md5", "d4bba439e000b95fd0a9bffe97cbabec"),),
    "data_batch_3": (("md5", "54ebc095f3ab1f0389bbae665268c751"),),
    "data_batch_4": (("md5", "634d18415352ddfa80567beed471001a"),),
    "data_batch_5": (("md5", "482c414d41f54cd18b22e5b47cb7c3cb"),),
    "test_batch": (("md5", "40351d587109b95175f43aff81a1287e"),),
}

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
SPLITS = ("train", "test")

Checksum = tuple[str, str]


class DatasetError(ValueError):
    """A data file that is corrupted, truncated, malformed or fails its checksum."""


class Dataset(NamedTuple):
    images: torch.Tensor   # float32 in [0, 1]: [N, C·H·W] or [N, C, H, W]
    labels: torch.Tensor   # int64 [N]


# -- files and checksums -------------------------------------------------------------
def data_home() -> Path:
    """``$CREDITLAB_DATA`` or ``~/.cache/creditlab``: where downloads are cached."""
    return Path(os.environ.get("CREDITLAB_DATA", Path.home() / ".cache" / "creditlab"))


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checksum_file(root: Path) -> dict[str, Checksum]:
    """``root/SHA256SUMS`` (``<hex>  <name>`` lines) as ``{name: ("sha256", hex)}``; empty when absent."""
    listing = root / "SHA256SUMS"
    if not listing.is_file():
        return {}
    sums = {}
    for number, line in enumerate(listing.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DatasetError(f"{listing}: line {number} is not '<sha256>  <file name>': {line!r}")
        sums[parts[1].lstrip("*")] = ("sha256", parts[0].lower())
    return sums


def checksum_mismatch(path: Path, expected: tuple[Checksum, ...]) -> str | None:
    """``None`` when ``path`` matches one of the ``expected`` checksums, else "expected …, got …"."""
    for algorithm, digest in expected:
        if file_digest(path, algorithm) == digest:
            return None
    wanted = " or ".join(f"{algorithm} {digest}" for algorithm, digest in expected)
    actual = ", ".join(sorted({f"{a} {file_digest(path, a)}" for a, _ in expected}))
    return f"expected {wanted}, got {actual}"


def verify_file(path: Path, expected: tuple[Checksum, ...]) -> None:
    """Raise :class:`DatasetError` unless ``path`` matches one of the ``expected`` checksums."""
    mismatch = checksum_mismatch(path, expected)
    if mismatch is not None:
        raise DatasetError(f"{path} is corrupted or truncated: {mismatch}. Delete it and download again; "
                           "for a deliberately different copy add a SHA256SUMS file next to it "
                           "or pass verify=False")


def download_file(url: str, destination: Path, expected: tuple[Checksum, ...], timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``destination`` through a temporary file, renamed into place once its checksum matches."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=destination.parent, prefix=f".{destination.name}.", delete=False)
    partial = Path(handle.name)
    try:
        with handle, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, handle)
        mismatch = checksum_mismatch(partial, expected)
        if mismatch is not None:
            raise DatasetError(f"{url} failed its checksum ({mismatch}); {destination} was not written")
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return destination


def _download_any(mirrors: tuple[str, ...], name: str, destination: Path,
                  expected: tuple[Checksum, ...]) -> None:
    errors = []
    for mirror in mirrors:
        try:
            download_file(mirror + name, destination, expected)
            return
        except (OSError, DatasetError) as error:
            errors.append(f"{mirror + name}: {error}")
    raise OSError(f"could not download {name}:\n  " + "\n  ".join(errors))


def _root(root: str | os.PathLike | None, default: Path, download: bool) -> Path:
    if root is None:
        return default
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike) or None, got {type(root).__name__}")
    path = Path(root).expanduser()
    if not path.is_dir() and not download:
        raise FileNotFoundError(f"root={str(root)!r} does not exist or is not a folder; pass the folder "
                                "holding the data files, or download=True to fetch them there")
    return path


# -- IDX (MNIST, Fashion-MNIST) --------------------------------------------------------
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (LeCun's MNIST format, gzipped or not) as a numpy array."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{path} cannot be read as a {'gzip-compressed ' if path.suffix == '.gz' else ''}"
                           f"IDX file (corrupted or truncated): {error}") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file: bad magic number {raw[:4].hex() or '(empty)'}")
    n_dims = raw[3]
    header = 4 + 4 * n_dims
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated inside its header ({len(raw)} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(n_dims))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise DatasetError(f"{path} is {state}: header {shape} needs {expected} bytes, file has {len(raw)}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _idx_file(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{root} holds neither {stem}.gz nor {stem}; pass download=True to fetch it")


def _as_dataset(images: np.ndarray, labels: np.ndarray, shape: tuple[int, int, int], flatten: bool,
                where: str) -> Dataset:
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
    pixels = torch.from_numpy(images.astype(np.float32) / 255.0)
    pixels = pixels.reshape(len(pixels), -1) if flatten else pixels.reshape(len(pixels), *shape)
    return Dataset(pixels, torch.from_numpy(labels.astype(np.int64)))


def _check_flags(split: str, flatten: bool, download: bool, verify: bool) -> None:
    _checks.choice("split", split, SPLITS)
    for name, value in (("flatten", flatten), ("download", download), ("verify", verify)):
        _checks.boolean(name, value)


def _load_idx_pair(root: Path, split: str, flatten: bool, download: bool, verify: bool,
                   known: dict[str, tuple[Checksum, ...]], mirrors: tuple[str, ...]) -> Dataset:
    prefix = "train" if split == "train" else "t10k"
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    if download:
        for stem in stems:
            if not (root / (stem + ".gz")).is_file() and not (root / stem).is_file():
                _download_any(mirrors, stem + ".gz", root / (stem + ".gz"), known[stem + ".gz"])
    paths = [_idx_file(root, stem) for stem in stems]
    if verify:
        listed = read_checksum_file(root)
        for path in paths:
            if path.name in listed:
                verify_file(path, (listed[path.name],))
            elif path.name in known:
                verify_file(path, known[path.name])
    images, labels = (read_idx(path) for path in paths)
    if images.ndim != 3 or labels.ndim != 1:
        raise DatasetError(f"{paths[0]} / {paths[1]}: expected images [N, H, W] and labels [N], "
                           f"got shapes {images.shape} and {labels.shape}")
    return _as_dataset(images, labels, (1, *images.shape[1:]), flatten, str(root))


def mnist(root: str | os.PathLike | None = None, split: str = "train", flatten: bool = True,
          download: bool = False, verify: bool = True) -> Dataset:
    """MNIST (LeCun, Cortes & Burges): 60 000 train / 10 000 test digits, 28 × 28.

    ``root``: folder with the four IDX files (``.gz`` or not), e.g. the
    10 000-digit subset with its ``SHA256SUMS``; default the cache folder.
    """
    _check_flags(split, flatten, download, verify)
    folder = _root(root, data_home() / "mnist", download)
    return _load_idx_pair(folder, split, flatten, download, verify, MNIST_FILES, MNIST_MIRRORS)


def fashion_mnist(root: str | os.PathLike | None = None, split: str = "train", flatten: bool = True,
                  download: bool = False, verify: bool = True) -> Dataset:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 60 000 / 10 000 clothing images, 28 × 28, 10 classes.

    Default ``root``: the Debian package's folder when installed
    (``apt-get install dataset-fashion-mnist``), else the cache folder.
    """
    _check_flags(split, flatten, download, verify)
    default = FASHION_MNIST_SYSTEM_PATH if FASHION_MNIST_SYSTEM_PATH.is_dir() else data_home() / "fashion-mnist"
    folder = _root(root, default, download)
    return _load_idx_pair(folder, split, flatten, download, verify, FASHION_MNIST_FILES, FASHION_MNIST_MIRRORS)


# -- CIFAR-10 -------------------------------------------------------------------------
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only, so a data file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("copyreg", "_reconstructor"),
               ("builtins", "object")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: images ``[N, 3072]`` uint8 and labels ``[N]``."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            batch = _ArrayUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError) as error:
        raise DatasetError(f"{path} cannot be read as a CIFAR-10 batch (corrupted or truncated): {error}") \
            from error
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetError(f"{path} is not a CIFAR-10 batch: expected a dict with b'data' and b'labels'")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise DatasetError(f"{path}: expected uint8 data [N, 3072] and N labels, "
                           f"got {data.dtype} {data.shape} and {labels.shape}")
    return data, labels


def _download_cifar10(root: Path) -> None:
    archive = root / "cifar-10-python.tar.gz"
    if not archive.is_file():
        download_file(CIFAR10_URL, archive, (("md5", CIFAR10_ARCHIVE_MD5),))
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".cifar-10-"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(staging, filter="data")
        os.replace(staging / CIFAR10_FOLDER, root / CIFAR10_FOLDER)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def cifar10(root: str | os.PathLike | None = None, split: str = "train", flatten: bool = True,
            download: bool = False, verify: bool = True) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009): 50 000 train / 10 000 test colour images, 3 × 32 × 32.

    ``root``: folder holding ``cifar-10-batches-py/`` (the extracted python
    archive) or the batch files themselves; default the cache folder.
    """
    _check_flags(split, flatten, download, verify)
    folder = _root(root, data_home() / "cifar10", download)
    if download and not (folder / CIFAR10_FOLDER).is_dir() and not (folder / "test_batch").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        _download_cifar10(folder)
    batches = folder / CIFAR10_FOLDER if (folder / CIFAR10_FOLDER).is_dir() else folder
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (batches / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{batches} lacks CIFAR-10 batch file(s) {', '.join(missing)}; "
                                "pass download=True to fetch them")
    listed = read_checksum_file(batches) if verify else {}
    parts = []
    for name in names:
        if verify:
            verify_file(batches / name, (listed[name],) if name in listed else CIFAR10_FILES[name])
        parts.append(read_cifar_batch(batches / name))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return _as_dataset(images, labels, (3, 32, 32), flatten, str(batches))


# -- scikit-learn digits ----------------------------------------------------------------
def digits(flatten: bool = True) -> Dataset:
    """scikit-learn's 1797 handwritten digits, 8 × 8 with intensities 0–16 (scaled to [0, 1])."""
    _checks.boolean("flatten", flatten)
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError("digits() needs scikit-learn, which is not installed; "
                          "install it with `pip install scikit-learn`") from error
    bunch = load_digits()
    images = torch.as_tensor(np.asarray(bunch.images, dtype=np.float32) / 16.0)
    images = images.reshape(len(images), -1) if flatten else images.reshape(len(images), 1, 8, 8)
    return Dataset(images, torch.as_tensor(np.asarray(bunch.target, dtype=np.int64)))
