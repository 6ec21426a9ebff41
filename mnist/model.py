"""The two networks: ours (small and CPU-cheap) and `seed`, the 18,050-parameter baseline.

Both end in log-softmax, as pytorch/examples' MNIST net does, so training uses `nll_loss`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn(
    c_in: int,
    c_out: int,
    size: int = 3,
    relu: bool = True,
    dropout: float = 0.0,
    bias: bool = False,
) -> nn.Sequential:
    """conv → BatchNorm → ReLU → dropout; 'same' padding so pooling alone sets the resolution."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, size, padding=size // 2, bias=bias),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Net(nn.Module):
    """Ours: 7,352 parameters, 0.9 M multiply-adds per image.

    Pooling right after the first conv keeps the expensive part (channels × pixels) small: only
    8 channels ever see 28×28, 16 see 14×14, 24 see 7×7. A 1×1 conv maps to 10 class maps and
    global average pooling turns them into logits, so there is no dense layer to pay for.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(1, 8),  # 28×28
            nn.MaxPool2d(2),
            conv_bn(8, 16),  # 14×14
            conv_bn(16, 16),
            nn.MaxPool2d(2),
            conv_bn(16, 24),  # 7×7
            nn.Conv2d(24, 10, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return F.log_softmax(x.mean(dim=(2, 3)), dim=1)


class SeedNet(nn.Module):
    """The baseline this project grew from: 18,050 parameters, 99.13% after 19 epochs.

    conv 3×3 1→8, 8→16, max-pool, 16→32, max-pool, 32→40 (convs with bias, 'valid' padding),
    each followed by BatchNorm, and by dropout 0.02 and ReLU except the last; global average
    pooling, linear 40→10, log-softmax.
    """

    def __init__(self, dropout: float = 0.02) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, last: bool = False) -> nn.Sequential:
            layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3), nn.BatchNorm2d(c_out)]
            if not last:
                layers += [nn.Dropout(dropout), nn.ReLU(inplace=True)]
            return nn.Sequential(*layers)

        self.features = nn.Sequential(
            block(1, 8),  # 26×26
            block(8, 16),  # 24×24
            nn.MaxPool2d(2),  # 12×12
            block(16, 32),  # 10×10
            nn.MaxPool2d(2),  # 5×5
            block(32, 40, last=True),  # 3×3
        )
        self.fc = nn.Linear(40, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean(dim=(2, 3))
        return F.log_softmax(self.fc(x), dim=1)


MODELS: dict[str, type[nn.Module]] = {"ours": Net, "seed": SeedNet}


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm's running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def summary(model: nn.Module) -> str:
    """A table of layer, output shape and parameters for one 1×28×28 image, via torchinfo."""
    try:
        import torchinfo
    except ImportError:  # torchinfo is a declared dependency; degrade rather than fail a run
        return f"{type(model).__name__}: {count_params(model):,} parameters (no torchinfo)"
    device = next(model.parameters()).device
    stats = torchinfo.summary(
        model,
        input_size=(1, 1, 28, 28),
        col_names=("output_size", "num_params"),
        depth=3,
        device=device,
        verbose=0,
    )
    return str(stats)
