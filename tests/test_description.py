"""Network files and presets: the published numbers, what each preset learns, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _seed import seed_values

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp import description, network


def _train(net: description.Network, steps: int | None = None) -> network.History:
    return network.train_network(
        net.net,
        net.inputs,
        net.targets,
        net.W,
        net.b,
        net.lr,
        steps if steps is not None else net.steps,
        train_bias=net.bias == "trained",
    )


def test_mazur_matches_the_published_example() -> None:
    # Matt Mazur, "A Step by Step Backpropagation Example" (2015): every number he prints.
    net = description.preset("mazur")
    assert net.bias == "fixed" and net.lr == (0.5,)
    run = _train(net, 9999)
    assert round(float(run.E_total[0, 0]), 9) == 0.298371109
    assert round(float(run.a[1][0, 0, 0, 0]), 9) == 0.593269992  # out_h1
    assert round(float(run.a[2][0, 0, 0, 0]), 9) == 0.75136507  # out_o1
    assert round(float(run.E_total[1, 0]), 9) == 0.291027774  # he rounds to 0.291027924
    published = [0.149780716, 0.19956143, 0.24975114, 0.29950229]
    published += [0.35891648, 0.408666186, 0.511301270, 0.561370121]
    after_one = np.concatenate([W[1, 0].ravel() for W in run.W])
    np.testing.assert_allclose(after_one, published, atol=5e-9)
    # "After repeating this process 10,000 times … the error plummets to 0.0000351085": his
    # 10,000th iteration is the row after 9,999 updates.
    assert round(float(run.E_total[-1, 0]), 10) == 0.0000351085
    np.testing.assert_array_equal(run.b[0][-1, 0], [0.35, 0.35])  # fixed: never updated


def test_xor_learns_every_output_on_its_side_of_one_half() -> None:
    net = description.preset("xor")
    assert net.net.layers == (2, 3, 1) and net.bias == "trained"
    run = _train(net)
    outputs = run.a[-1][-1, :, :, 0]  # (learning rates, samples)
    wanted = net.targets[:, 0] > 0.5
    assert np.all((outputs > 0.5) == wanted), outputs
    assert not np.all((run.a[-1][0, :, :, 0] > 0.5) == wanted)  # it did not start there


def test_softmax_classifier_learns_all_three_classes() -> None:
    net = description.preset("softmax")
    assert net.net.activations == ("tanh", "softmax") and net.net.loss == "cross_entropy"
    run = _train(net)
    predicted = run.a[-1][-1].argmax(axis=-1)  # (learning rates, samples)
    assert np.all(predicted == net.targets.argmax(axis=1))
    assert np.all(np.diff(run.E_total, axis=0) < 0)


def test_seed_preset_is_the_default_network() -> None:
    net = description.preset("seed")
    values = seed_values()
    assert net.weights == [values[f"w{k}"] for k in range(1, 9)]
    run = (
        _train(net, 20)
        if net.lr
        else network.train_network(net.net, net.inputs, net.targets, net.W, net.b, [0.5, 2.0], 20)
    )
    v = {k: float(x) for k, x in values.items()}
    x, t = np.array([[v["i1"], v["i2"]]]), np.array([[v["t1"], v["t2"]]])
    W = [np.array([[v["w1"], v["w2"]], [v["w3"], v["w4"]]])]
    W.append(np.array([[v["w5"], v["w6"]], [v["w7"], v["w8"]]]))
    named = network.train_network(network.SEED, x, t, W, [None, None], [0.5, 2.0], 20)
    np.testing.assert_allclose(run.E_total, named.E_total, rtol=1e-15)


def test_flat_seed_keys_override_the_seed() -> None:
    net = description.from_mapping({"t1": 0.9, "w5": -1.0})
    assert net.targets.tolist() == [[0.9, 0.5]]
    assert net.weights[4] == -1.0 and net.weights[0] == 0.15


def test_weights_drawn_from_the_seed_are_reproducible() -> None:
    base = {"layers": [2, 3, 1], "inputs": [[0, 1]], "targets": [[1]], "bias": True}
    one, again = (
        description.from_mapping(base | {"seed": 4}),
        description.from_mapping(base | {"seed": 4}),
    )
    other = description.from_mapping(base | {"seed": 5})
    assert one.weights == again.weights != other.weights
    assert len(one.weights) == 9 and one.biases == [0.0] * 4


def test_load_reads_a_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "net.toml"
    path.write_text("layers = [1, 1]\ninputs = [[1]]\ntargets = [[0.5]]\nweights = [0.3]\n")
    assert description.load(path).weights == [0.3]
    path.write_text("layers = [1, 1]\ncolour = 2\n")
    with pytest.raises(BpxlError, match=r"net\.toml: unknown key 'colour'"):
        description.load(path)
    path.write_text("layers = [1, \n")
    with pytest.raises(BpxlError, match="not valid TOML"):
        description.load(path)
    with pytest.raises(BpxlError, match="no such file"):
        description.load(tmp_path / "none.toml")
    with pytest.raises(BpxlError, match="unknown preset 'nope'"):
        description.preset("nope")
