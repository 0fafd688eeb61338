"""Dataset loaders (no network: synthetic files in tmp_path and the bundled MNIST subset),
plus the models they feed: the small ConvNet and the 784-200-2-200-784 autoencoder."""
from __future__ import annotations

import gzip
import hashlib
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import creditlab as cl
from creditlab.tasks import datasets
from creditlab.tasks.datasets import DatasetError

MNIST_10K = Path("/work/shared/data/mnist-10k")


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def write_sha256sums(folder: Path) -> None:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}"
             for p in sorted(folder.iterdir()) if p.name != "SHA256SUMS"]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def fake_mnist(folder: Path, n: int = 12, gz: bool = True, checksums: bool = True) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    if checksums:
        write_sha256sums(folder)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_load_as_scaled_tensors(tmp_path, gz):
    images, labels = fake_mnist(tmp_path, gz=gz)
    flat = datasets.mnist(tmp_path)
    assert flat.images.dtype == torch.float32 and flat.images.shape == (12, 784)
    assert flat.labels.dtype == torch.int64
    assert torch.equal(flat.labels, torch.from_numpy(labels.astype(np.int64)))
    assert torch.allclose(flat.images[3], torch.from_numpy(images[3].reshape(-1) / 255.0).float())
    square = datasets.mnist(tmp_path, split="test", flatten=False)
    assert square.images.shape == (12, 1, 28, 28)
    assert 0.0 <= float(square.images.min()) and float(square.images.max()) <= 1.0


def test_the_bundled_mnist_subset_loads_and_verifies():
    train = datasets.mnist(MNIST_10K)
    test = datasets.mnist(MNIST_10K, split="test")
    assert train.images.shape == (8000, 784) and test.images.shape == (2000, 784)
    assert set(train.labels.unique().tolist()) == set(range(10))
    assert 0.08 < float(train.images.mean()) < 0.2    # MNIST's mean intensity is about 0.13


def test_a_corrupted_file_is_named_with_its_expected_checksum(tmp_path):
    fake_mnist(tmp_path)
    target = tmp_path / "train-labels-idx1-ubyte.gz"
    expected = hashlib.sha256(target.read_bytes()).hexdigest()
    data = bytearray(target.read_bytes())
    data[-5] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=f"train-labels-idx1-ubyte.gz.*{expected}"):
        datasets.mnist(tmp_path)


def test_canonical_checksums_apply_without_a_checksum_file(tmp_path):
    fake_mnist(tmp_path, checksums=False)
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz.*f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        datasets.mnist(tmp_path)
    assert datasets.mnist(tmp_path, verify=False).images.shape == (12, 784)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_files_are_reported_by_name_even_unverified(tmp_path, gz):
    fake_mnist(tmp_path, gz=gz, checksums=False)
    target = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    target.write_bytes(target.read_bytes()[:-300])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.*(truncated|corrupted)"):
        datasets.mnist(tmp_path, verify=False)


def test_bad_header_and_mismatched_counts(tmp_path):
    fake_mnist(tmp_path, checksums=False)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04rest"))
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz is not an IDX file"):
        datasets.mnist(tmp_path, verify=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DatasetError, match="12 images but 5 labels"):
        datasets.mnist(tmp_path, verify=False)


def test_missing_root_and_missing_files_name_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="root='.*nowhere'"):
        datasets.mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*download=True"):
        datasets.fashion_mnist(tmp_path)
    with pytest.raises(ValueError, match="split"):
        datasets.mnist(MNIST_10K, split="validation")
    with pytest.raises(TypeError, match="root"):
        datasets.cifar10(root=3)


def test_download_renames_only_a_verified_file(tmp_path):
    source = tmp_path / "served.bin"
    source.write_bytes(b"creditlab" * 100)
    good = (("md5", hashlib.md5(source.read_bytes()).hexdigest()),)
    destination = tmp_path / "cache" / "file.bin"
    datasets.download_file(source.as_uri(), destination, good)
    assert destination.read_bytes() == source.read_bytes()
    other = tmp_path / "cache" / "other.bin"
    with pytest.raises(DatasetError, match="md5 0{32}"):
        datasets.download_file(source.as_uri(), other, (("md5", "0" * 32),))
    assert sorted(p.name for p in other.parent.iterdir()) == ["file.bin"]   # no partial file left


def test_download_of_a_bad_mirror_leaves_nothing(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    fake_mnist(mirror, checksums=False)
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", (mirror.as_uri() + "/",))
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match="(?s)could not download train-images-idx3-ubyte.gz.*f68b3c2d"):
        datasets.mnist(cache, download=True)
    assert list(cache.iterdir()) == []


def fake_cifar(folder: Path, n: int = 6) -> np.ndarray:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": data, b"labels": list(range(n))}, handle)
    write_sha256sums(folder)
    return data


def test_cifar_batches_load_and_checksums_apply(tmp_path):
    data = fake_cifar(tmp_path / "cifar-10-batches-py")
    train = datasets.cifar10(tmp_path, flatten=False)
    assert train.images.shape == (30, 3, 32, 32) and train.labels.dtype == torch.int64
    assert torch.allclose(train.images[1].reshape(-1), torch.from_numpy(data[1] / 255.0).float())
    test = datasets.cifar10(tmp_path, split="test")
    assert test.images.shape == (6, 3072)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:1000])
    with pytest.raises(DatasetError, match="test_batch.*sha256"):
        datasets.cifar10(tmp_path, split="test")
    with pytest.raises(DatasetError, match="test_batch cannot be read"):
        datasets.cifar10(tmp_path, split="test", verify=False)


def test_cifar_loader_refuses_pickles_that_would_run_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump({b"data": print}, handle)
    with pytest.raises(DatasetError, match="refusing to load builtins.print"):
        datasets.cifar10(tmp_path, split="test", verify=False)


def test_digits_names_the_package_to_install_when_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        datasets.digits()


def test_fashion_mnist_from_the_system_package():
    if not datasets.FASHION_MNIST_SYSTEM_PATH.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    test = datasets.fashion_mnist(split="test")
    assert test.images.shape == (10000, 784)
    assert torch.equal(test.labels.bincount(), torch.full((10,), 1000))


def test_convnet_learns_mnist_digits_with_bptt():
    torch.manual_seed(0)
    train = datasets.mnist(MNIST_10K)
    test = datasets.mnist(MNIST_10K, split="test")
    net = cl.models.ConvNet(in_shape=(1, 28, 28), channels=(8, 16), n_out=10, seed=0)
    sim = cl.Simulator(net, cl.rules.BPTT())
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    loss = cl.losses.WindowCrossEntropy(window=1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        index = torch.randint(len(train.labels), (64,), generator=generator)
        opt.zero_grad()
        sim.run(train.images[index][None], train.labels[index], loss=loss)
        opt.step()
    with torch.no_grad():
        accuracy = float((net(test.images[:500]).argmax(-1) == test.labels[:500]).float().mean())
    assert accuracy > 0.7, accuracy


def test_convnet_shapes_and_gradient_match_autograd():
    net = cl.models.ConvNet(in_shape=(2, 8, 12), channels=(3, 4), n_out=5, kernel_size=3, seed=1).double()
    x = torch.rand(4, 2, 8, 12, dtype=torch.float64)
    y = torch.randn(4, 5, dtype=torch.float64)
    assert net(x).shape == (4, 5) and torch.allclose(net(x), net(x.flatten(1)))
    exact = cl.rules.exact_gradient(net, x.flatten(1), y)
    ((net(x) - y) ** 2).mean().backward()
    for name, p in net.named_parameters():
        assert torch.allclose(exact[name], p.grad)
    with pytest.raises(ValueError, match="kernel_size"):
        cl.models.ConvNet(kernel_size=4)
    with pytest.raises(ValueError, match="in_shape"):
        cl.models.ConvNet(in_shape=(1, 2, 28))


def test_autoencoder_shape_and_reconstruction_learning():
    net = cl.models.autoencoder(seed=0)
    assert net.sizes == [784, 200, 2, 200, 784]
    images = datasets.mnist(MNIST_10K).images[:256]
    sim = cl.Simulator(net, cl.rules.BPTT())
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    first = float(sim.run(images, images).loss)
    for _ in range(40):
        opt.zero_grad()
        result = sim.run(images, images)
        opt.step()
    code = net.step(images, None)[2].activities[2]
    assert code.shape == (256, 2)
    assert float(result.loss) < 0.6 * first
    with pytest.raises(ValueError, match="code"):
        cl.models.autoencoder(code=0)


def test_autoencoder_with_a_linear_code_has_an_unbounded_code():
    net = cl.models.autoencoder(n_in=6, hidden=5, code_activation="linear", seed=0)
    assert net.activations == ("tanh", "linear", "tanh") and net.activation == ("tanh", "linear", "tanh")
    with torch.no_grad():
        net.layers[1].weight.mul_(100.0)
    code = net.step(torch.randn(8, 6), None)[2].activities[2]
    assert float(code.abs().max()) > 1.0   # a tanh code would stay inside (−1, 1)
    assert cl.models.autoencoder(seed=0).activation == "tanh"
    with pytest.raises(ValueError, match="code_activation"):
        cl.models.autoencoder(code_activation="softplus")
