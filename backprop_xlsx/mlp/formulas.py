"""The formulas of an LR sheet's columns, as templates in the names of the math.

A mixin of `layout.SheetLayout`, which compiles these templates to cell references: kept apart
so that the math of one iteration (z, a, E, δ, ∂E/∂w, the update) reads in one place, and the
layout's positions in another. One row is one full-batch iteration, its columns in the order the
math is read; docs/workbook.md ("The LR sheets") lists them and their names (a_h1, δo1, a_h1⁽²⁾).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from backprop_xlsx.mlp.batches import batches_per_epoch
from backprop_xlsx.mlp.optim import HYPERPARAMETERS, STATE_HEADERS, Optimizer

# {name} this row's cell, {prev name} the row above's, {setup name} Setup's value
PLACEHOLDER = re.compile(r"\{(?:(prev|setup) )?(\w+)\}")


def fill(template: str, cell: Callable[[str | None, str], str]) -> str:
    """A template with each placeholder replaced by cell(where, name), `where` being "prev",
    "setup" or None: the one reading of the templates, for cells and for equations alike."""
    return PLACEHOLDER.sub(lambda m: cell(m[1], m[2]), template)


def names_read(template: str) -> frozenset[str]:
    """The names a template reads, wherever from."""
    return frozenset(name for _, name in PLACEHOLDER.findall(template))


SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
HIDDEN_LETTERS = ("h", "k")
MAX_COLUMNS = 16_384  # XFD, the last column of Excel, LibreOffice and Gnumeric
ITERATION = "iteration"  # the key and header of column A: the iteration number
MAX_FORMULAS = 20_000_000  # the seed at 6 × 100,000 steps is 18.6 M, and needs 11.6 GB to recalc

FORMAT_ITERATION = "0"
FORMAT_DATA = "0.00"
FORMAT_VALUE = "0.000000000"
FORMAT_SMALL = "0.000000E+00"

ACTIVATION_FORMULAS = {
    "sigmoid": "1/(1+EXP(-{z}))",
    "tanh": "TANH({z})",
    "relu": "MAX(0,{z})",
    "linear": "{z}",
}
ERROR_FORMULAS = {
    "mse": "0.5*({t}-{a})^2",
    "cross_entropy": "-{t}*LN({a})",
    # −(t·ln a + (1 − t)·ln(1 − a)) with a = σ(z), written through z as PyTorch's
    # BCEWithLogits does: where a rounds to 1, 1 − a is 0 and LN(0) an error (LibreOffice rounds
    # a difference that near its operands to 0), while this form is finite for every z
    "binary_cross_entropy": "MAX({z},0)-{t}*{z}+LN(1+EXP(-ABS({z})))",
}


def state(optimizer: Optimizer, name: str, p: str) -> str:
    """The formula (no leading '=') of an optimizer's state `name` of parameter p in a row after
    the first, as torch.optim's docs write it; g is ∂E/∂p of the row above."""
    g, v = "{prev dE_d" + p + "}", "{prev v_" + p + "}"
    if optimizer.name in ("momentum", "nesterov"):  # v ← μ·v + g
        return "{setup mu}*" + v + "+" + g
    if optimizer.name == "rmsprop":  # v ← α·v + (1 − α)·g²
        return "{setup alpha}*" + v + "+(1-{setup alpha})*" + g + "^2"
    return {  # adam, adamw; β1ᵗ and β2ᵗ are columns of their own (optim.Optimizer.powers)
        "m": "{setup beta1}*{prev m_" + p + "}+(1-{setup beta1})*" + g,
        "v": "{setup beta2}*" + v + "+(1-{setup beta2})*" + g + "^2",
        "m_hat": "{m_" + p + "}/(1-{beta1_t})",
        "v_hat": "{v_" + p + "}/(1-{beta2_t})",
    }[name]


def update(optimizer: Optimizer, p: str) -> str:
    """The formula (no leading '=') of parameter p in a row after the first: one step of the
    optimizer from the row above."""
    prev, g = "{prev " + p + "}", "{prev dE_d" + p + "}"
    adam_step = "{eta}*{m_hat_" + p + "}/(SQRT({v_hat_" + p + "})+{setup eps})"
    return {
        "sgd": f"{prev}-{{eta}}*{g}",
        "momentum": f"{prev}-{{eta}}*{{v_{p}}}",
        "nesterov": f"{prev}-{{eta}}*({g}+{{setup mu}}*{{v_{p}}})",
        "rmsprop": f"{prev}-{{eta}}*{g}/(SQRT({{v_{p}}})+{{setup eps}})",
        "adam": f"{prev}-{adam_step}",
        "adamw": f"{prev}*(1-{{eta}}*{{setup weight_decay}})-{adam_step}",
    }[optimizer.name]


def neuron_letter(layer: int, depth: int) -> str:
    """i for the inputs (layer 0), o for the outputs (layer `depth`), h and k in between."""
    if layer == 0:
        return "i"
    if layer == depth:
        return "o"
    return HIDDEN_LETTERS[layer - 1]


def _times_derivative(f: str, z: str, a: str, factor: str) -> str:
    """factor·f′(z) as the sheet writes it, through a = f(z) where that is the custom."""
    if f == "sigmoid":
        return f"({factor})*{a}*(1-{a})"
    if f == "tanh":
        return f"({factor})*(1-{a}^2)"
    if f == "relu":
        return f"IF({z}>0,{factor},0)"
    return f"({factor})"  # linear


class Formulas:
    """key → formula templates of every LR-sheet column; needs the layout's names (`names`,
    `weight_number`, `bias_number`, `sample`, `sample_header`, `network`, `classic`, `depth`,
    `samples`, `iteration_column`)."""

    def _templates(self) -> dict[str, tuple[str, str, str, str]]:
        """key → (header, number format, formula of iteration 0, formula of later rows)."""
        out: dict[str, tuple[str, str, str, str]] = {}
        net, S = self.network.net, range(self.samples)

        def constant(key: str, header: str, fmt: str, template: str) -> None:
            out[key] = (header, fmt, template, template)

        if self.iteration_column:  # a formula, so verify checks it as it checks every other
            out[ITERATION] = (ITERATION, FORMAT_ITERATION, "=0", "={prev " + ITERATION + "}+1")
        if self.batching is not None:
            out.update(self._batch_columns())

        for s in S:
            for kind in ("t", "i"):
                names = self.names[-1] if kind == "t" else self.names[0]
                for j in range(len(names)):
                    key = self.sample(f"{kind}{j + 1}", s)
                    header = self.sample_header(f"{kind}{j + 1}", s)
                    if self.batching is None:
                        constant(key, header, FORMAT_DATA, "={setup " + key + "}")
                    else:
                        offset = j + 1 + (len(self.names[0]) if kind == "t" else 0)
                        constant(key, header, FORMAT_DATA, "=" + self._pick(s, offset))
        for layer in range(self.depth):
            trained = [w for row in self.weight_number[layer] for w in row]
            for w in trained:
                out[w] = (w, FORMAT_VALUE, "={setup " + w + "}", "=" + update(self.optimizer, w))
            for b in self.bias_number[layer]:
                if self.network.bias == "fixed":
                    constant(b, b, FORMAT_VALUE, "={setup " + b + "}")
                else:
                    trained.append(b)
                    later = "=" + update(self.optimizer, b)
                    out[b] = (b, FORMAT_VALUE, "={setup " + b + "}", later)
            for h in self.optimizer.powers if layer == 0 else ():  # β1ᵗ, β2ᵗ: the powers
                header = HYPERPARAMETERS[h].symbol + "ᵗ"
                later = "={prev " + h + "_t}*{setup " + h + "}"
                out[f"{h}_t"] = (header, FORMAT_SMALL, "=1", later)
            for name in self.optimizer.states:  # the optimizer's state, beside the parameters
                for p in trained:
                    header = f"{STATE_HEADERS[name]}_{p}"
                    later = "=" + state(self.optimizer, name, p)
                    out[f"{name}_{p}"] = (header, FORMAT_SMALL, "=0", later)
            for s in S:
                for j, name in enumerate(self.names[layer + 1]):
                    z, a = self.sample(name, s), self.sample(f"a_{name}", s)
                    constant(
                        z, self.sample_header(name, s), FORMAT_VALUE, "=" + self._z(layer, j, s)
                    )
                    constant(
                        a,
                        self.sample_header(f"a_{name}", s),
                        FORMAT_VALUE,
                        "=" + self._a(layer, j, s),
                    )
        terms = []
        for s in S:
            for j in range(len(self.names[-1])):
                key = self.sample(f"E{j + 1}", s)
                t, a = self.sample(f"t{j + 1}", s), self.sample(f"a_o{j + 1}", s)
                z = self.sample(self.names[-1][j], s)
                formula = ERROR_FORMULAS[net.loss].format(
                    t="{" + t + "}", a="{" + a + "}", z="{" + z + "}"
                )
                constant(key, self.sample_header(f"E{j + 1}", s), FORMAT_SMALL, "=" + formula)
                terms.append("{" + key + "}")
        constant("E_total", "E_total", FORMAT_SMALL, "=" + "+".join(terms))
        if self.batching is not None:
            full = [f"{{full_E_s{s + 1}}}" for s in range(self.training_samples)]
            constant("E_train", "E_train", FORMAT_SMALL, "=" + "+".join(full))
        if not self.classic:
            for layer in range(self.depth - 1, -1, -1):
                for s in S:
                    for j, name in enumerate(self.names[layer + 1]):
                        key = self.sample(f"d_{name}", s)
                        header = self.sample_header(f"δ{name}", s)
                        constant(key, header, FORMAT_SMALL, "=" + self.delta(layer, j, s))
        for layer in range(self.depth):
            for r, row in enumerate(self.weight_number[layer]):
                for c, w in enumerate(row):
                    sender = self.names[layer][c]
                    sender = sender if layer == 0 else f"a_{sender}"
                    terms = [
                        f"{self._delta_ref(layer, r, s)}*{{{self.sample(sender, s)}}}" for s in S
                    ]
                    constant(f"dE_d{w}", f"∂E/∂{w}", FORMAT_SMALL, "=" + "+".join(terms))
        for layer in range(self.depth):
            if self.network.bias != "trained":
                break
            for j, b in enumerate(self.bias_number[layer]):
                terms = [self._delta_ref(layer, j, s) for s in S]
                constant(f"dE_d{b}", f"∂E/∂{b}", FORMAT_SMALL, "=" + "+".join(terms))
        if self.batching is not None:
            out.update(self._full_pass_columns())
        return out

    def _z(self, layer: int, j: int, s: int) -> str:
        """z = Σ w·a_prev + b for neuron j of weight layer `layer`, sample s."""
        senders = self.names[layer]
        terms = [
            f"{{{w}}}*{{{self.sample(n if layer == 0 else f'a_{n}', s)}}}"
            for w, n in zip(self.weight_number[layer][j], senders, strict=True)
        ]
        if self.bias_number[layer]:
            terms.append(f"{{{self.bias_number[layer][j]}}}")
        return "+".join(terms)

    def _a(self, layer: int, j: int, s: int) -> str:
        f = self.network.net.activations[layer]
        names = self.names[layer + 1]
        if f == "softmax":
            exps = [f"EXP({{{self.sample(n, s)}}})" for n in names]
            return f"{exps[j]}/({'+'.join(exps)})"
        return ACTIVATION_FORMULAS[f].format(z="{" + self.sample(names[j], s) + "}")

    def delta(self, layer: int, j: int, s: int) -> str:
        """δ = ∂E/∂z of neuron j of weight layer `layer`, sample s, without the leading '='."""
        net = self.network.net
        name = self.names[layer + 1][j]
        f = net.activations[layer]
        z, a = "{" + self.sample(name, s) + "}", "{" + self.sample(f"a_{name}", s) + "}"
        if layer == self.depth - 1:
            t = "{" + self.sample(f"t{j + 1}", s) + "}"
            if net.loss != "mse":  # softmax + cross-entropy, sigmoid + binary cross-entropy
                return f"{a}-{t}"
            if f == "sigmoid":  # the seed's own writing: (a_o1-t1)*a_o1*(1-a_o1)
                return f"({a}-{t})*{a}*(1-{a})"
            return _times_derivative(f, z, a, f"{a}-{t}")
        fan_out = "+".join(
            f"{self._delta_ref(layer + 1, r, s)}*{{{self.weight_number[layer + 1][r][j]}}}"
            for r in range(len(self.names[layer + 2]))
        )
        return _times_derivative(f, z, a, fan_out)

    def _delta_ref(self, layer: int, j: int, s: int) -> str:
        """δ as another formula uses it: its column, or in the classic layout its expression.

        The seed's classic layout writes no δ columns: its gradients inline δ, exactly as the
        worked example it grew from (∂E/∂w1 = (δo1·w5 + δo2·w7)·a_h1·(1 − a_h1)·i1, δo1 written
        out)."""
        if self.classic:
            return self.delta(layer, j, s)
        return "{" + self.sample(f"d_{self.names[layer + 1][j]}", s) + "}"


# ---------------------------------------------------------------------------------------------
# Mini-batches (batches.py): which samples a row sees, and the loss on the whole training set


def _full_activation(f: str, z: str, exps: list[str], j: int) -> str:
    """a = f(z) with z written out in brackets (the full pass has no z columns)."""
    if f == "softmax":
        return f"{exps[j]}/({'+'.join(exps)})"
    return ACTIVATION_FORMULAS[f].format(z=f"({z})")


class BatchFormulas:
    """The columns of a mini-batch run (`batching` set): a mixin of `Formulas`' class.

    epoch = QUOTIENT(iteration, nb)+1; the batch's sample numbers n⁽ᵐ⁾ = INDEX of Setup's schedule
    at (epoch, position); each position's inputs and targets INDEX-picked from Setup's column
    B; and a forward pass of every training sample (columns a_h1 [s] …, E [s]) for E_train.
    """

    def _batch_columns(self) -> dict[str, tuple[str, str, str, str]]:
        B = self.batching.batch_size
        nb = batches_per_epoch(self.training_samples, B)
        epoch = "=QUOTIENT({" + ITERATION + "}," + str(nb) + ")+1"
        out = {"epoch": ("epoch", FORMAT_ITERATION, epoch, epoch)}
        for m in range(B):
            position = "MOD({" + ITERATION + "}," + str(nb) + ")*" + str(B) + "+" + str(m + 1)
            pick = "=INDEX({schedule},{epoch}," + position + ")"
            out[self.sample("n", m)] = (self.sample_header("n", m), FORMAT_ITERATION, pick, pick)
        return out

    def _pick(self, m: int, offset: int) -> str:
        """Setup's entry `offset` (1-based) of the sample at batch position m."""
        n = "{" + self.sample("n", m) + "}"
        return f"INDEX({{data}},({n}-1)*{self.stride}+{offset})"

    def _full_pass_columns(self) -> dict[str, tuple[str, str, str, str]]:
        net, out = self.network.net, {}
        loss = ERROR_FORMULAS[net.loss]
        for s in range(self.training_samples):
            tag = f" [{s + 1}]"
            for layer in range(self.depth):
                f, names = net.activations[layer], self.names[layer + 1]
                zs = []
                for j in range(len(names)):
                    senders = [
                        "{setup " + self.setup_sample(n, s) + "}"
                        if layer == 0
                        else f"{{full_a_{n}_s{s + 1}}}"
                        for n in self.names[layer]
                    ]
                    terms = [
                        f"{{{w}}}*{a}"
                        for w, a in zip(self.weight_number[layer][j], senders, strict=True)
                    ]
                    if self.bias_number[layer]:
                        terms.append(f"{{{self.bias_number[layer][j]}}}")
                    zs.append("+".join(terms))
                exps = [f"EXP({z})" for z in zs]
                outputs = zs  # the last layer's: binary cross-entropy is written through z
                for j, name in enumerate(names):
                    formula = "=" + _full_activation(f, zs[j], exps, j)
                    out[f"full_a_{name}_s{s + 1}"] = (f"a_{name}{tag}", FORMAT_VALUE, formula,
                                                      formula)  # fmt: skip
            errors = [
                loss.format(
                    t="{setup " + self.setup_sample(f"t{j + 1}", s) + "}",
                    a=f"{{full_a_{name}_s{s + 1}}}",
                    z=f"({outputs[j]})",
                )
                for j, name in enumerate(self.names[-1])
            ]
            formula = "=" + "+".join(errors)
            out[f"full_E_s{s + 1}"] = (f"E{tag}", FORMAT_SMALL, formula, formula)
        return out
