"""A build's bytes depend on the network and the options only, not on the NumPy it ran under.

NumPy's own exp/tanh/log differ in the last bits between releases (SIMD code rewritten), and
np.float64's repr differs between NumPy 1 and 2; so the run's transcendental functions come from
the C library (backprop_xlsx.mlp.libm) and every stored number is `repr(float(x))`. The witness for
the functions is Python's math module, element by element.
"""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _cli import bpxl

from backprop_xlsx.mlp import libm, network
from backprop_xlsx.xlsx.stream import number_text

ROOT = Path(__file__).resolve().parent.parent


def _arguments() -> np.ndarray:
    rng = np.random.default_rng(7)
    edges = [0.0, -0.0, 1e-300, -745.2, 709.7, 710.0, -1000.0, 1e308, math.inf, -math.inf]
    return np.concatenate([rng.uniform(-30, 30, 20_000), rng.normal(0, 3, 20_000), edges])


@pytest.mark.parametrize(
    ("ours", "witness"),
    [
        (libm.exp, lambda v: math.exp(v) if v < 709.8 else math.inf),
        (libm.tanh, math.tanh),
        (libm.log, lambda v: math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan)),
    ],
)
def test_transcendental_functions_are_the_c_librarys_bit_for_bit(ours, witness) -> None:
    x = _arguments()
    if ours is libm.log:
        x = np.concatenate([np.abs(x), [-1.0, -0.0, math.nan]])
    with np.errstate(all="ignore"):  # overflow and ln of x < 0, as np.exp and np.log warn
        got = ours(x)
    want = np.array([witness(float(v)) for v in x])
    assert got.dtype == np.float64 and got.shape == x.shape
    np.testing.assert_array_equal(
        got.view(np.int64)[~np.isnan(want)], want.view(np.int64)[~np.isnan(want)]
    )
    assert np.isnan(got[np.isnan(want)]).all()


def test_the_network_runs_on_them() -> None:
    z = _arguments()[:2000].reshape(2, 1000)
    np.testing.assert_array_equal(network.sigmoid(z), 1 / (1 + libm.exp(-z)))
    np.testing.assert_array_equal(network.activate("tanh", z), libm.tanh(z))


def _numbers(book: Path) -> list[str]:
    """Every numeric <v> of every sheet (cells with no t, or t="n")."""
    out = []
    with zipfile.ZipFile(book) as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/sheet"):
                xml = z.read(name).decode("utf-8")
                for attrs, v in re.findall(
                    r"<c ([^>]*)>(?:<f[^>]*/>|<f[^>]*>.*?</f>)?<v>([^<]*)</v>", xml
                ):
                    if 't="' not in attrs or 't="n"' in attrs:
                        out.append(v)
    return out


def test_every_stored_number_is_the_shortest_round_trip_text(tmp_path: Path) -> None:
    out = tmp_path / "book.xlsx"
    done = bpxl("build", "--preset", "xor", "--steps", "50", "--out", str(out))
    assert done.returncode == 0, done.stderr
    numbers = _numbers(out)
    assert len(numbers) > 1000
    odd = [v for v in numbers if v not in (number_text(float(v)), str(int(float(v))))]
    assert not odd, odd[:5]
    first = out.read_bytes()
    done = bpxl("build", "--preset", "xor", "--steps", "50", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == first  # a rebuild over the same file: the same bytes


def test_number_text_ignores_the_type_it_is_given() -> None:
    for x in (0.1, 1 / 3, 5e-324, 1e22, -2.5e-7):
        assert number_text(np.float64(x)) == number_text(x) == repr(x)
    assert number_text(np.uint8(7)) == number_text(7) == "7"


def test_the_readme_build_leaves_the_committed_workbook_byte_for_byte(tmp_path: Path) -> None:
    """The README's build command over outputs/backprop.xlsx gives back the committed bytes,
    on whichever NumPy runs the tests (CI runs them on the newest and the lowest admitted)."""
    committed = ROOT / "outputs" / "backprop.xlsx"
    out = tmp_path / "backprop.xlsx"
    out.write_bytes(committed.read_bytes())
    done = bpxl("build", "--lr", "0.1", "0.2", "0.5", "0.8", "1", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == committed.read_bytes(), f"numpy {np.__version__}"
