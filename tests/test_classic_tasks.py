"""Two spirals and Zipser & Andersen's coordinate transform."""
from __future__ import annotations

import math

import pytest
import torch

import creditlab as cl
from creditlab.tasks.classic import eye_position_code, gaussian_map, two_spirals


def test_two_spirals_is_the_lang_witbrock_benchmark():
    points, labels = two_spirals()
    assert points.shape == (194, 2) and labels.bincount().tolist() == [97, 97]
    assert torch.allclose(points[0], torch.tensor([0.0, 6.5], dtype=torch.float64))
    radius = points[:97].norm(dim=1)
    assert torch.all(radius[1:] < radius[:-1])               # an inward spiral
    assert torch.allclose(points[97:], -points[:97])         # the second arm is the first reflected
    turns = (96 * math.pi / 16) / (2 * math.pi)
    assert turns == pytest.approx(3.0)
    assert two_spirals(density=2)[0].shape == (2 * (96 * 2 + 1), 2)


def test_spiral_task_batches_and_registry():
    task = cl.tasks.TASKS["spiral"](seed=3)
    x, y = task.sample(16)
    assert x.shape == (1, 16, 2) and y.shape == (16,) and y.dtype == torch.int64
    again = cl.tasks.TwoSpiral(seed=3).sample(16)
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    with pytest.raises(ValueError, match="density"):
        cl.tasks.TwoSpiral(density=0)


def test_backprop_separates_the_two_spirals():
    task = cl.tasks.TwoSpiral()
    x, y = task.points()
    net = cl.models.MLP([2, 32, 32, 2], activation="tanh", seed=0)
    sim = cl.Simulator(net, cl.rules.BPTT())
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    accuracy = 0.0
    for step in range(1500):
        opt.zero_grad()
        result = sim.run(x, y, loss=task.loss)
        opt.step()
        if step % 50 == 0:
            accuracy = task.metrics(result.outputs, y)["accuracy"]
            if accuracy >= 0.99:
                break
    with torch.no_grad():
        accuracy = task.metrics(net(x), y)["accuracy"]
    assert accuracy >= 0.99, accuracy


def test_zipser_andersen_encoding():
    retinal = torch.tensor([[-35.0, 15.0], [0.0, 0.0]], dtype=torch.float64)
    code = gaussian_map(retinal)
    assert code.shape == (2, 64)
    # row-major map (row = vertical position): the unit centred on (−35°, 15°) is row 5, column 0
    assert int(code[0].argmax()) == 5 * 8 + 0 and float(code[0].max()) == pytest.approx(1.0)
    eye = torch.tensor([[-20.0, 0.0], [20.0, 0.0]], dtype=torch.float64)
    ramps = eye_position_code(eye)
    assert ramps.shape == (2, 32)
    positive, negative = ramps[:, :8], ramps[:, 8:16]
    assert torch.all(positive[1] >= positive[0]) and torch.all(negative[1] <= negative[0])
    assert torch.all((ramps >= 0) & (ramps <= 1))


def test_zipser_andersen_samples_and_decoding():
    task = cl.tasks.TASKS["zipser-andersen"](seed=0)
    retinal, eye = task.sample_positions(500)
    assert retinal.abs().max() <= 40 and eye.abs().max() <= 20 and (retinal + eye).abs().max() <= 40
    x, target = task.encode(retinal, eye)
    assert x.shape == (500, 96) and target.shape == (500, 64)
    assert float((task.decode(target) - (retinal + eye)).norm(dim=-1).max()) < 0.1
    xs, ys = task.sample(8)
    assert xs.shape == (1, 8, 96) and ys.shape == (1, 8, 64)
    assert task.metrics(ys, ys)["position_error"] == 0.0


def train_zipser_andersen(steps: int, seed: int = 0) -> float:
    task = cl.tasks.ZipserAndersen(seed=seed)
    net = cl.models.MLP([96, 25, 64], activation="sigmoid", seed=seed)
    sim = cl.Simulator(net, cl.rules.BPTT())
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        x, y = task.sample(128)
        opt.zero_grad()
        sim.run(x, y, loss=task.loss)
        opt.step()
    x, y = task.sample(1000)
    with torch.no_grad():
        return task.metrics(net(x), y)["position_error"]


def test_backprop_learns_the_coordinate_transform():
    assert train_zipser_andersen(400) < 3.0


@pytest.mark.slow
def test_backprop_reaches_about_a_degree_on_the_coordinate_transform():
    assert train_zipser_andersen(3000) < 1.2
