"""A trained torch model read as the sheets compute it: an `Arch`, its weights, and for each
stage the torch module whose output the stage's feature maps must equal.

The models the project defines are `model.features` (nested nn.Sequentials of Conv2d,
BatchNorm2d, ReLU, MaxPool2d and Dropout), then global average pooling, then optionally
`model.fc`, then log-softmax. Dropout is the identity in eval mode. BatchNorm is folded into the
conv before it, directly (conv → BN) or across a max-pool (conv → pool → BN, exact through the
sign-aware pool of backprop_xlsx.cnn.layout). Anything else is one `BpxlError` naming the layer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from backprop_xlsx.cnn.forward import ConvParams, Weights, forward
from backprop_xlsx.cnn.layout import CLASSES, Arch, Conv, Linear, Pool, Stage
from backprop_xlsx.errors import BpxlError


@dataclass(frozen=True)
class Source:
    """Where a stage's maps are in torch: the output of `module`, then `after` applied to it.

    `after` is the BatchNorm of a conv → pool → BN block: the conv stage's folded map is that
    BatchNorm applied to the raw conv output, which no torch module outputs by itself.
    """

    module: nn.Module
    after: tuple[nn.Module, ...] = ()


@dataclass
class NetModel:
    arch: Arch
    weights: Weights
    sources: list[Source]  # one per stage of arch
    bn: dict[str, nn.BatchNorm2d]  # conv name → its folded BatchNorm


def _flatten(seq: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for name, child in seq.named_children():
        path = f"{prefix}.{name}"
        if isinstance(child, nn.Sequential):
            out += _flatten(child, path)
        else:
            out.append((path, child))
    return out


def _unsupported(path: str, module: nn.Module, why: str = "") -> BpxlError:
    detail = f" ({why})" if why else ""
    return BpxlError(
        f"layer {path} is a {type(module).__name__}{detail}: the net sheet can show only "
        "Conv2d, BatchNorm2d, ReLU, MaxPool2d and Dropout in model.features, then an nn.Linear fc"
    )


def _check_conv(path: str, m: nn.Conv2d) -> int:
    k = m.kernel_size[0]
    plain = (
        m.kernel_size == (k, k)
        and m.stride == (1, 1)
        and m.padding in ((0, 0), "valid")
        and m.dilation == (1, 1)
        and m.groups == 1
    )
    if not plain:
        raise _unsupported(path, m, "only square kernels, stride 1, no padding, no groups")
    return k


def _pool_size(path: str, m: nn.MaxPool2d) -> int:
    k = m.kernel_size
    stride = m.stride if m.stride is not None else k
    if not (isinstance(k, int) and stride == k and m.padding == 0 and m.dilation == 1):
        raise _unsupported(path, m, "only k×k windows with stride k, no padding")
    if m.ceil_mode:
        raise _unsupported(path, m, "ceil_mode")
    return k


def _array(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().double().cpu().numpy().copy()


def read_model(model: nn.Module) -> NetModel:
    """The model as stages; BpxlError naming the first layer the sheets cannot compute."""
    children = dict(model.named_children())
    features = children.pop("features", None)
    fc = children.pop("fc", None)
    if not isinstance(features, nn.Sequential):
        raise BpxlError(f"{type(model).__name__} has no nn.Sequential `features`")
    for name, child in children.items():
        raise _unsupported(name, child, "an extra module beside features and fc")
    if fc is not None and not isinstance(fc, nn.Linear):
        raise _unsupported("fc", fc)
    layers = [(p, m) for p, m in _flatten(features, "features") if not isinstance(m, nn.Dropout)]
    stages: list[Stage] = []
    sources: list[Source] = []
    convs: dict[str, ConvParams] = {}
    bns: dict[str, nn.BatchNorm2d] = {}
    n_conv = n_pool = 0
    i = 0
    while i < len(layers):
        path, m = layers[i]
        if isinstance(m, nn.Conv2d):
            k = _check_conv(path, m)
            n_conv += 1
            name = f"conv{n_conv}"
            params = ConvParams(_array(m.weight), _array(m.bias))
            convs[name] = params
            nxt = [layer for _, layer in layers[i + 1 : i + 4]]
            bn: nn.BatchNorm2d | None = None
            pool_between = None
            if nxt and isinstance(nxt[0], nn.BatchNorm2d):
                bn, used = nxt[0], 1
            elif (
                len(nxt) >= 2
                and isinstance(nxt[0], nn.MaxPool2d)
                and isinstance(nxt[1], nn.BatchNorm2d)
            ):
                bn, pool_between, used = nxt[1], layers[i + 1], 2
            else:
                used = 0
            if bn is not None:
                if not bn.track_running_stats or bn.running_mean is None or not bn.affine:
                    raise _unsupported(layers[i + used][0], bn, "no running statistics or affine")
                params.gamma, params.beta = _array(bn.weight), _array(bn.bias)
                params.mean, params.var = _array(bn.running_mean), _array(bn.running_var)
                params.eps = np.full(m.out_channels, float(bn.eps))
                bns[name] = bn
            j = i + 1 + used
            relu = j < len(layers) and isinstance(layers[j][1], nn.ReLU)
            if relu:
                j += 1
            if pool_between is None:
                stages.append(Conv(name, m.in_channels, m.out_channels, k, m.bias is not None,
                                   bn is not None, relu))  # fmt: skip
                sources.append(Source(layers[j - 1][1]))
            else:
                pool_path, pool = pool_between
                n_pool += 1
                stages.append(Conv(name, m.in_channels, m.out_channels, k, m.bias is not None,
                                   True, False))  # fmt: skip
                sources.append(Source(m, (bn,)))
                stages.append(Pool(f"pool{n_pool}", _pool_size(pool_path, pool), relu, name))
                sources.append(Source(layers[j - 1][1]))
            i = j
        elif isinstance(m, nn.MaxPool2d):
            n_pool += 1
            j = i + 1
            relu = j < len(layers) and isinstance(layers[j][1], nn.ReLU)
            j += relu
            stages.append(Pool(f"pool{n_pool}", _pool_size(path, m), relu, None))
            sources.append(Source(layers[j - 1][1]))
            i = j
        elif isinstance(m, nn.ReLU) and stages and stages[-1].relu:
            sources[-1] = Source(m)  # ReLU twice is ReLU once
            i += 1
        elif isinstance(m, nn.BatchNorm2d):
            raise _unsupported(path, m, "not right after a Conv2d, nor after Conv2d → MaxPool2d")
        else:
            raise _unsupported(path, m)
    linear = None
    weights = Weights(convs)
    if fc is not None:
        linear = Linear("fc", fc.in_features, fc.out_features)
        weights.fc_weight = _array(fc.weight)
        weights.fc_bias = _array(fc.bias) if fc.bias is not None else np.zeros(fc.out_features)
    arch = Arch(tuple(stages), linear)
    try:
        arch.shapes()
    except ValueError as exc:
        raise BpxlError(f"{type(model).__name__} cannot be shown as sheets: {exc}") from None
    return NetModel(arch, weights, sources, bns)


def check_forward(model: nn.Module, net: NetModel, images: torch.Tensor) -> None:
    """The sheets' computation (NumPy, float64) must give the model's own log-probabilities.

    Catches a forward() that is not features → mean over H, W → [fc] → log-softmax, which the
    module tree alone cannot show. `images` are raw pixel values 0-255, shape (N, 784).
    """
    from mnist.data import MEAN, STD

    x = ((images.double() / 255 - MEAN) / STD).reshape(-1, 1, 28, 28)
    twin = copy.deepcopy(model).cpu().double().eval()
    with torch.no_grad():
        want = twin(x).numpy()
    for n, pixels in enumerate(images.numpy()):
        got = forward(net.arch, net.weights, pixels, MEAN, STD)
        if want.shape[1] != CLASSES or not np.allclose(
            np.log(got.probs), want[n], rtol=1e-9, atol=1e-9
        ):
            raise BpxlError(
                f"{type(model).__name__}'s forward is not features → global average pooling → "
                "[fc] → log-softmax, so the sheets would compute another net"
            )
