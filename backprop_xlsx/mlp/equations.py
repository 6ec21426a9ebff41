"""The equations shown on the Setup sheet, and the text describing the network there.

The seed's classic 2-2-2 derivation is written out by hand for teaching; any other network's
equations are rendered from the layout's own formula templates, so the text cannot drift from
the formulas. `network_fields` is what verify reads back to know the network's shape.
"""

from __future__ import annotations

import dataclasses
import re

from backprop_xlsx.mlp import layout
from backprop_xlsx.mlp.batches import batches_per_epoch
from backprop_xlsx.mlp.description import Network
from backprop_xlsx.mlp.formulas import fill

# (text, is a heading). Plain text cells: none may be read as a formula (see sheets.write_text).
EQUATIONS: tuple[tuple[str, bool], ...] = (
    ("Forward pass, with σ(x) = 1/(1 + e^(−x))", True),
    ("h1 = w1·i1 + w2·i2        a_h1 = σ(h1)", False),
    ("h2 = w3·i1 + w4·i2        a_h2 = σ(h2)", False),
    ("o1 = w5·a_h1 + w6·a_h2    a_o1 = σ(o1)", False),
    ("o2 = w7·a_h1 + w8·a_h2    a_o2 = σ(o2)", False),
    ("Error", True),
    ("E1 = ½·(t1 − a_o1)²      E2 = ½·(t2 − a_o2)²      E_total = E1 + E2", False),
    ("Backward pass: the chain rule, with σ'(x) = σ(x)·(1 − σ(x))", True),
    ("∂E/∂w5 = ∂E/∂a_o1 · ∂a_o1/∂o1 · ∂o1/∂w5 = (a_o1 − t1)·a_o1·(1 − a_o1)·a_h1", False),
    ("∂E/∂w6 = ∂E/∂a_o1 · ∂a_o1/∂o1 · ∂o1/∂w6 = (a_o1 − t1)·a_o1·(1 − a_o1)·a_h2", False),
    ("∂E/∂w7 = ∂E/∂a_o2 · ∂a_o2/∂o2 · ∂o2/∂w7 = (a_o2 − t2)·a_o2·(1 − a_o2)·a_h1", False),
    ("∂E/∂w8 = ∂E/∂a_o2 · ∂a_o2/∂o2 · ∂o2/∂w8 = (a_o2 − t2)·a_o2·(1 − a_o2)·a_h2", False),
    ("Write δo1 = ∂E/∂o1 = (a_o1 − t1)·a_o1·(1 − a_o1) and δo2 = (a_o2 − t2)·a_o2·(1 − a_o2).", False),  # noqa: E501
    ("w1 reaches E_total along both paths, through o1 (via w5) and through o2 (via w7):", False),
    ("∂E/∂w1 = (∂E1/∂a_h1 + ∂E2/∂a_h1) · ∂a_h1/∂h1 · ∂h1/∂w1", False),
    ("          with ∂E1/∂a_h1 = δo1·w5 and ∂E2/∂a_h1 = δo2·w7, ∂a_h1/∂h1 = a_h1·(1 − a_h1), ∂h1/∂w1 = i1", False),  # noqa: E501
    ("∂E/∂w1 = (δo1·w5 + δo2·w7)·a_h1·(1 − a_h1)·i1", False),
    ("∂E/∂w2 = (δo1·w5 + δo2·w7)·a_h1·(1 − a_h1)·i2", False),
    ("∂E/∂w3 = (δo1·w6 + δo2·w8)·a_h2·(1 − a_h2)·i1", False),
    ("∂E/∂w4 = (δo1·w6 + δo2·w8)·a_h2·(1 − a_h2)·i2", False),
    ("Update: gradient descent, all eight weights at once", True),
    ("w ← w − η·∂E/∂w: each row's weights are the row above's minus η times its gradients.", False),
)  # fmt: skip


def network_title(sheet: layout.SheetLayout) -> str:
    """ "a 2-2-2 sigmoid network", "a 2-3-1 network (sigmoid, sigmoid; mse; biases trained)"."""
    net = sheet.network
    shape = "-".join(map(str, net.net.layers))
    if sheet.classic:
        return f"a {shape} sigmoid network"
    bias = {"none": "no biases", "trained": "biases trained", "fixed": "biases fixed"}[net.bias]
    return f"a {shape} network ({', '.join(net.net.activations)}; {net.net.loss}; {bias})"


def network_fields(sheet: layout.SheetLayout) -> dict[str, str]:
    """What the network is, as text on Setup; `bpxl verify` reads it back from there."""
    net = sheet.network
    bias = {"none": "false", "trained": "true", "fixed": "fixed"}[net.bias]
    fields = {
        "preset": net.preset or "(own file)",
        "layers": ", ".join(map(str, net.net.layers)),
        "activations": ", ".join(net.net.activations),
        "loss": net.net.loss,
        "bias": bias,
        "samples": str(net.samples),
        "layout": "classic" if sheet.classic else "general",
    }
    assert tuple(fields) == layout.NETWORK_FIELDS
    if net.batching is not None:  # mini-batches: the schedule's parameters, after the network's
        batching = net.batching
        numbers = (batching.batch_size, batching.seed, batching.epochs)
        fields |= dict(zip(layout.BATCH_FIELDS, map(str, numbers), strict=True))
    return fields


def _math(template: str) -> str:
    """A formula template as a line of math: {a_h1} → a_h1, d_o1 → δo1, * → ·, ^2 → ²."""
    text = fill(template.lstrip("="), lambda where, name: name)
    text = re.sub(r"\bd_(\w+)", r"δ\1", text)
    text = re.sub(r"\bdE_d(\w+)", r"∂E/∂\1", text)
    for code, shown in (("*", "·"), ("^2", "²"), ("-", " − "), ("+", " + "), ("EXP", "exp")):
        text = text.replace(code, shown)
    return text.replace("( − ", "(−").replace("TANH", "tanh").replace("LN", "ln")


def general_equations(sheet: layout.SheetLayout) -> list[tuple[str, bool]]:
    """The equations of this network, written from the same templates as its formulas.

    Shown for one sample; with several, every per-sample name carries the sample, x⁽ˢ⁾."""
    one = layout.SheetLayout(replace_samples(sheet.network))
    net = one.network.net
    lines: list[tuple[str, bool]] = [
        ("Forward pass: z = W·a_prev + b, a = f(z), layer by layer", True)
    ]
    for layer in range(one.depth):
        for name in one.names[layer + 1]:
            z, a = one.templates[name][0], one.templates[f"a_{name}"][0]
            lines.append((f"{name} = {_math(z)}        a_{name} = {_math(a)}", False))
    lines.append((f"Error ({net.loss}), summed over outputs and samples", True))
    terms = [k for k in one.keys if re.fullmatch(r"E\d+", k)]
    for key in terms:
        lines.append((f"{key} = {_math(one.templates[key][0])}", False))
    lines.append(
        (
            "E_total = "
            + (
                f"Σ over the batch's positions m of ({' + '.join(terms)})⁽ᵐ⁾"
                if sheet.batching
                else f"Σ over the samples s of ({' + '.join(terms)})⁽ˢ⁾"
                if sheet.samples > 1
                else " + ".join(terms)
            ),
            False,
        )
    )
    backward = "Backward pass: δ = ∂E/∂z from the loss at the output, then (W_nextᵀ·δ_next)·f′(z)"
    lines.append((backward, True))
    for layer in range(one.depth - 1, -1, -1):
        for name in one.names[layer + 1]:
            lines.append((f"δ{name} = {_math(one.templates['d_' + name][0])}", False))
    lines.append(("Gradients: ∂E/∂w = δ of the receiving neuron · a of the sending one", True))
    grads = [k for k in one.keys if k.startswith("dE_d")]
    for key in grads:
        lines.append((f"∂E/∂{key[4:]} = {_math(one.templates[key][0])}", False))
    if sheet.batching is not None:
        lines.extend(batch_equations(sheet))
    elif sheet.samples > 1:
        lines.append(
            (
                f"With {sheet.samples} samples each gradient is the sum of every sample's: "
                "x⁽ˢ⁾ is x for training sample s (the per-sample columns carry ⁽ˢ⁾).",
                False,
            )
        )
    update = "every weight and bias" if sheet.network.bias == "trained" else "every weight"
    if sheet.network.bias == "fixed":
        update += " (the biases are fixed: used, never updated)"
    lines.append((f"Update: gradient descent on {update}, all at once", True))
    step = "w ← w − η·∂E/∂w: each row's parameters are the row above's minus η times its gradient"
    lines.append((step, False))
    return lines


def batch_equations(sheet: layout.SheetLayout) -> list[tuple[str, bool]]:
    """How a mini-batch row picks its samples, and what E_train is."""
    assert sheet.batching is not None
    B, S, seed = sheet.batching.batch_size, sheet.training_samples, sheet.batching.seed
    nb = batches_per_epoch(S, B)
    dropped = f"; the last {S % B} of each shuffle are dropped" if S % B else ""
    return [
        (f"Mini-batches of {B} of the {S} samples: {nb} steps per epoch{dropped}", True),
        (
            f"Each epoch shuffles the samples: the table right of the network (epoch × position → "
            f"sample number) is NumPy's np.random.default_rng({seed}).permutation({S}) + 1, "
            "called once per epoch in order.",
            False,
        ),
        (
            f"epoch = QUOTIENT(iteration, {nb}) + 1; the sample at batch position m is "
            f"n⁽ᵐ⁾ = INDEX(schedule, epoch, MOD(iteration, {nb})·{B} + m).",
            False,
        ),
        (
            "x⁽ᵐ⁾ is x for batch position m: its inputs and targets are INDEX-picked from column B "
            "by n⁽ᵐ⁾; E_total and every gradient are sums over the row's batch only.",
            False,
        ),
        (
            "E_train is the loss of the row's weights on all samples: a forward pass of every "
            "sample s (columns a_h1 [s] …, E [s]) at the right of the sheet.",
            False,
        ),
    ]


def replace_samples(network: Network) -> Network:
    """The same network with its first sample only, in the general layout: the equations are
    each sample's."""
    return dataclasses.replace(
        network,
        inputs=network.inputs[:1],
        targets=network.targets[:1],
        batching=None,
        classic=False,  # the general equations: the classic derivation is written out by hand
    )
