"""`bpxl build` and `bpxl verify`.

Every failure is one line on stderr, `error: …`, never a traceback, and a documented exit code
(`EXIT_CODES`, shown by `bpxl --help`: 0 done, 1 wrong workbook, 2 cannot do it, 130/143/129
interrupted), so scripts and CI can tell a wrong workbook from a broken run. Interrupted or
terminated, bpxl cleans up as on any failure (signals raise exceptions, not exit): temporary
files are removed, an existing output is left as it was, and a LibreOffice bpxl started is
killed with its process group.
"""

from __future__ import annotations

import json
import math
import signal
import sys
from pathlib import Path
from typing import NoReturn

import click

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.mlp.batches import DEFAULT_SHUFFLE_SEED
from backprop_xlsx.mlp.config import (
    MAX_STEPS,
    check_batching,
    check_learning_rates,
    check_optimizers,
    check_steps,
)
from backprop_xlsx.mlp.description import PRESETS, load_network
from backprop_xlsx.mlp.optim import OPTIMIZERS

DEFAULT_LRS = (0.1, 0.2, 0.5, 0.8, 1.0, 2.0)
DEFAULT_STEPS = 100
DEFAULT_OUT = Path("outputs/backprop.xlsx")


def _is_option(arg: str) -> bool:
    """`--out` is an option; `-0.5` is a (bad) value that --lr should get, and then reject."""
    if not arg.startswith("-") or arg == "-":
        return False
    try:
        float(arg)
    except ValueError:
        return True
    return False


def expand_variadic(args: list[str], flag: str) -> list[str]:
    """`--lr 0.1 0.2 2` → `--lr 0.1 --lr 0.2 --lr 2`, so click's `multiple=True` can take it."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            out += args[i - 1 :]
            break
        if arg != flag:
            out.append(arg)
            continue
        values = []
        while i < len(args) and not _is_option(args[i]):
            values.append(args[i])
            i += 1
        out += [flag] if not values else [x for v in values for x in (flag, v)]
    return out


class VariadicLrCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = expand_variadic(list(args), "--lr")
        return super().parse_args(ctx, expand_variadic(args, "--optimizer"))


EXIT_CODES = """\b
Exit codes:
  0    done (verify: the workbook is right)
  1    verify: the workbook is wrong
  2    cannot do it: bad input, unreadable or unwritable file, disk full,
       LibreOffice missing or crashed, internal error (one `error:` line says which)
  130  interrupted (Ctrl-C); 143 terminated (SIGTERM); 129 hung up (SIGHUP)
"""


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM/SIGHUP, so every `finally` and `with` cleans up.

    A BaseException (like KeyboardInterrupt) so that no `except Exception` swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: object) -> None:
    # Only the first signal raises: a second one must not interrupt the cleanup of the first.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


def _install_signal_handlers() -> dict[int, object]:
    """SIGTERM and SIGHUP raise Terminated; returns the handlers they replace."""
    replaced: dict[int, object] = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:  # leave an ignored SIGHUP (nohup) ignored
            try:
                replaced[sig] = signal.signal(sig, _on_signal)
            except ValueError:  # not the main thread (bpxl called from a library): leave them
                break
    return replaced


class Interrupted(BaseException):
    """Ctrl-C, re-raised past click (which would print a blank line and raise Abort)."""


class OneLineErrors(click.Group):
    """Every failure becomes `error: …` on one line with a documented exit code (module doc)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted() from None

    def main(self, *args, **kwargs):  # type: ignore[override]
        replaced = _install_signal_handlers()
        try:
            self._main(*args, **kwargs)
        finally:  # called in-process (tests, a library): give the signals back
            for sig, handler in replaced.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]

    def _main(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except _NO_ARGS as exc:  # bare `bpxl`: the help, as written, not squeezed onto one line
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except (click.Abort, Interrupted):
            _fail("interrupted", 130)
        except Terminated as exc:
            _fail(f"terminated by {signal.Signals(exc.signum).name}", 128 + exc.signum)
        except BpxlError as exc:
            _fail(str(exc), 2)
        except MemoryError:
            _fail("out of memory", 2)
        except OSError as exc:  # an environment problem no check foresaw (disk full, I/O error)
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc}", 2)
        except Exception as exc:  # a bug: still one line, and the way to report it
            _fail(
                f"internal error: {type(exc).__name__}: {exc} (a bug in bpxl: please report "
                "it with the command you ran)",
                2,
            )
        sys.exit(rv or 0)


_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {_one_line(message)}", err=True)
    sys.exit(code)


def _one_line(message: str) -> str:
    return " ".join(message.split())


class Finite(click.ParamType):
    """A float that says which value was wrong: `--lr: 'abc' is not a number`."""

    name = "number"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, float):
            return value
        try:
            number = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


@click.group(
    cls=OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES,
)
@click.version_option(package_name="bpxl")
def cli() -> None:
    """bpxl: watch a neural network learn by live formulas in a workbook, and prove it.

    The default is the 2-2-2 sigmoid network of the worked example; `build --preset` or
    `--config` gives any small network."""


@cli.command(cls=VariadicLrCommand)
@click.option(
    "--lr",
    "etas",
    type=Finite(),
    multiple=True,
    metavar="η [η …]",
    help="Learning rates, one sheet each. Takes several values after one flag: "
    "--lr 0.1 0.2 0.5 0.8 1 2 (the seed's default; a network file may set its own).",
)
@click.option(
    "--steps",
    type=int,
    default=None,
    help=f"Gradient-descent updates per sheet (1 to {MAX_STEPS:,}; default 100, or the network "
    "file's); row 1 is the initial weights.",
)
@click.option(
    "--preset",
    type=click.Choice(PRESETS),
    help="A network from templates/: seed (the default 2-2-2), mazur (the worked example with "
    "biases), xor (2-3-1), softmax (a 3-class classifier), moons (40 generated points, for "
    "--batch-size), ravine (a 2-1 linear neuron in a narrow valley, for --optimizer).",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Network file (TOML): layers, activations, loss, bias, inputs, targets, weights, "
    "biases, seed, lr, steps; or the seed's i1 i2 t1 t2 w1…w8. See docs/network-files.md.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_OUT,
    show_default=True,
    help="Workbook to write (.xlsx; missing folders are made). Replaced atomically; sheets "
    "bpxl did not make are kept, and a sheet of yours with the name of one bpxl writes stops "
    "the build.",
)
@click.option(
    "--batch-size",
    type=int,
    default=None,
    help="Mini-batch gradient descent: each step sees this many training samples, from a "
    "seeded shuffle per epoch shown on Setup (the last S mod B of each shuffle are dropped). "
    "Default: the whole training set (full batch).",
)
@click.option(
    "--shuffle-seed",
    type=int,
    default=DEFAULT_SHUFFLE_SEED,
    show_default=True,
    help="Seed of the mini-batch shuffle: NumPy's default_rng(seed).permutation, once per epoch.",
)
@click.option(
    "--recalc",
    is_flag=True,
    help="Also store computed values (through LibreOffice), for viewers that do not calculate.",
)
@click.option(
    "--exercise",
    is_flag=True,
    help="Leave columns empty for a student to fill (yellow, with a note): by default every δ "
    "and ∂E/∂ column; `bpxl verify` grades the filled-in file.",
)
@click.option(
    "--blank",
    multiple=True,
    metavar="COLUMN",
    help="With --exercise: a column to leave empty, by its header (∂E/∂w3) or key (dE_dw3); "
    "repeat for more.",
)
@click.option(
    "--optimizer",
    "optimizers",
    type=click.Choice(list(OPTIMIZERS)),
    multiple=True,
    metavar="NAME [NAME …]",
    help="Update rules, each with every --lr a sheet of its own (Adam 0.05): "
    f"{', '.join(OPTIMIZERS)} (torch.optim's SGD, SGD with momentum, with nesterov=True, "
    "RMSprop, Adam, AdamW). Several after one flag; default sgd, plain gradient descent.",
)
@click.option("--momentum", "mu", type=Finite(), help="μ of momentum and nesterov (0.9).")
@click.option(
    "--betas", type=(Finite(), Finite()), default=None, help="β1 β2 of adam and adamw (0.9 0.999)."
)
@click.option("--eps", type=Finite(), help="ε of rmsprop, adam and adamw (1e-8).")
@click.option("--alpha", type=Finite(), help="α, the decay of rmsprop's mean of g² (0.99).")
@click.option("--weight-decay", type=Finite(), help="λ of adamw's decoupled weight decay (0.01).")
@click.option(
    "--gradient-check",
    is_flag=True,
    help="Add a Gradient check sheet: for every weight and bias, backprop's ∂E/∂θ beside a "
    "central difference (E(θ + h) − E(θ − h))/2h, both by formulas, at an iteration you pick.",
)
def build(
    etas: tuple[float, ...],
    steps: int | None,
    preset: str | None,
    config: Path | None,
    out: Path,
    batch_size: int | None,
    shuffle_seed: int,
    recalc: bool,
    exercise: bool,
    blank: tuple[str, ...],
    optimizers: tuple[str, ...],
    mu: float | None,
    betas: tuple[float, float] | None,
    eps: float | None,
    alpha: float | None,
    weight_decay: float | None,
    gradient_check: bool,
) -> None:
    """Write the workbook: a Setup sheet, one sheet per learning rate (and optimizer), and Error
    vs LR (Optimizers when other optimizers than sgd are built)."""
    network = load_network(config, preset)
    lrs = check_learning_rates(list(etas) or list(network.lr or DEFAULT_LRS))
    given = {"mu": mu, "eps": eps, "alpha": alpha, "weight_decay": weight_decay}
    if betas is not None:
        given |= {"beta1": betas[0], "beta2": betas[1]}
    chosen, hyper = check_optimizers(optimizers, given)
    steps = check_steps(steps if steps is not None else network.steps or DEFAULT_STEPS)
    network = check_batching(network, batch_size, shuffle_seed, steps)
    if gradient_check and network.batching is not None:
        raise BpxlError(
            "--gradient-check compares the whole training set's central difference with the "
            "LR sheet's gradient, which with --batch-size is one batch's: build them apart"
        )
    if out.suffix.lower() != ".xlsx":
        raise BpxlError(f"--out must end in .xlsx, got {out}")

    from backprop_xlsx.mlp.workbook import build_workbook
    from backprop_xlsx.xlsx.fileio import make_folders, remove_empty_folders

    # A missing folder is made, for the default outputs/ and for any other --out alike, and
    # removed again if the build does not finish.
    blanks: frozenset[str] = frozenset()
    if exercise or blank:
        from .mlp import layout

        sheet = layout.SheetLayout(network)
        blanks = layout.exercise_columns(sheet, blank)
    created = make_folders(out.parent)
    try:
        summary = build_workbook(
            network,
            lrs,
            steps,
            out,
            recalc=recalc,
            blank=blanks,
            optimizers=chosen,
            hyper=hyper,
            gradient_check=gradient_check,
        )
    except BaseException:
        remove_empty_folders(created)
        raise
    click.echo(summary)
    if created:
        click.echo(f"made folder {created[-1]}")


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--engine",
    type=click.Choice(["auto", "cached", "libreoffice"]),
    default="auto",
    show_default=True,
    help="Where the values come from: values cached by Excel/LibreOffice, or a headless "
    "LibreOffice recalculation of a copy; auto uses cached values when the file has them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report (or the error) as JSON.")
@click.option(
    "--csv",
    "csv_out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Several files or a folder: also write the summary table as CSV, for a gradebook.",
)
@click.option(
    "--workers", type=click.IntRange(1, 64), help="Files checked at once (default: the CPUs)."
)
def verify(
    paths: tuple[Path, ...], engine: str, as_json: bool, csv_out: Path | None, workers: int | None
) -> None:
    """Check a workbook: bpxl's own (every LR sheet recomputed in NumPy), or one made by hand
    (the 2-2-2 assignment's iteration tables, found by their header row). Several files or a
    folder: one summary table of the class.

    \b
    Exit status:
      0  the workbook is correct
      1  the workbook is wrong (each wrong cell, formula or quantity is listed)
      2  it cannot be checked (unreadable, damaged or hostile file, no table,
         no values and no LibreOffice); one line `error: …`, or {"ok": false, "error": …}
         with --json. For a class: the worst of its files.
    """
    from .handmade import report as hand

    paths = paths or (DEFAULT_OUT,)
    if len(paths) > 1 or paths[0].is_dir() or csv_out is not None:
        _verify_class(paths, as_json, csv_out, workers)
    path = paths[0]
    from backprop_xlsx.verify.progress import Progress, on_terminal
    from backprop_xlsx.verify.workbook import verify_package
    from backprop_xlsx.xlsx.read import Package

    try:
        pkg = Package(path)  # opened once: its sheet titles say which checker reads it
    except BpxlError as exc:
        _cannot_verify(path, str(exc), as_json)
    try:
        grade = None if hand.is_bpxl_package(pkg) else hand.grade_open(pkg, str(path))
        if grade is None:
            shown = not as_json and on_terminal(sys.stdout, sys.stderr)
            with Progress(shown, "verify") as progress:
                report = verify_package(pkg, engine=engine, progress=progress)
    except BpxlError as exc:
        _cannot_verify(path, str(exc), as_json)
    except Exception as exc:  # a bug in bpxl: still one line, still exit 2
        _cannot_verify(path, f"internal error: {type(exc).__name__}: {exc}", as_json)
    finally:
        pkg.close()
    if grade is not None:
        if grade["verdict"] == "cannot_check" and not grade["tables"]:
            _cannot_verify(path, f"{path}: {grade['reason']}", as_json)
        click.echo(json.dumps(grade, indent=2, ensure_ascii=False) if as_json else hand.text(grade))
        raise click.exceptions.Exit(hand.EXIT[grade["verdict"]])
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.text())
    if not report.ok:
        raise click.exceptions.Exit(1)


def _verify_class(
    paths: tuple[Path, ...], as_json: bool, csv_out: Path | None, workers: int | None
) -> NoReturn:
    """A class at once: one row per file, checked in parallel; exit with the worst verdict."""
    from .handmade import report as hand

    files = hand.class_files(paths)
    if not files:
        raise BpxlError(f"no .xlsx files in {', '.join(map(str, paths))}")
    grades = []
    rows = []
    for grade in hand.grade_class(files, workers):
        rows.append(hand.summary_row(grade))
        if as_json:
            grades.append(grade)
    if csv_out is not None:
        from .xlsx.fileio import atomic_output

        with atomic_output(csv_out) as tmp:
            tmp.write_text(hand.summary_csv(rows), encoding="utf-8")
    if as_json:
        click.echo(json.dumps({"files": grades, "summary": rows}, indent=2, ensure_ascii=False))
    else:
        click.echo(hand.summary_text(rows))
    raise click.exceptions.Exit(hand.class_exit(rows))


def _cannot_verify(path: Path, message: str, as_json: bool) -> NoReturn:
    """Exit 2 with one line: `error: …` on stderr, or a JSON object on stdout with --json."""
    message = _one_line(message)
    if as_json:
        click.echo(json.dumps({"path": str(path), "ok": False, "error": message}))
        raise click.exceptions.Exit(2)
    raise BpxlError(message)


def main() -> None:
    cli()
