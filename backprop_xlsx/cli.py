"""`bpxl build` and `bpxl verify`.

Every user-facing failure is one line on stderr and a non-zero exit: 2 for bad input or a missing
tool, 1 when `verify` finds a wrong cell.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path
from typing import NoReturn

import click

from .config import MAX_STEPS, check_learning_rates, check_steps, load_values
from .errors import BpxlError

DEFAULT_LRS = (0.1, 0.2, 0.5, 0.8, 1.0, 2.0)
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
        return super().parse_args(ctx, expand_variadic(list(args), "--lr"))


class OneLineErrors(click.Group):
    """Turns click's usage errors and BpxlError into `error: …` on one line, never a traceback."""

    def main(self, *args, **kwargs):  # type: ignore[override]
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(130)
        except BpxlError as exc:
            click.echo(f"error: {_one_line(str(exc))}", err=True)
            sys.exit(2)
        sys.exit(rv or 0)


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


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bpxl")
def cli() -> None:
    """bpxl: watch a 2-2-2 sigmoid network learn by live formulas in a workbook, and prove it."""


@cli.command(cls=VariadicLrCommand)
@click.option(
    "--lr",
    "etas",
    type=Finite(),
    multiple=True,
    metavar="η [η …]",
    help="Learning rates, one sheet each. Takes several values after one flag: "
    "--lr 0.1 0.2 0.5 0.8 1 2 (the default).",
)
@click.option(
    "--steps",
    type=int,
    default=100,
    show_default=True,
    help=f"Gradient-descent updates per sheet (1 to {MAX_STEPS:,}); row 1 is the initial weights.",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML file with any of i1 i2 t1 t2 w1…w8 (defaults: templates/network.toml).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_OUT,
    show_default=True,
    help="Workbook to write. Replaced atomically; sheets bpxl did not make are kept.",
)
@click.option(
    "--recalc",
    is_flag=True,
    help="Also store computed values (through LibreOffice), for viewers that do not calculate.",
)
def build(
    etas: tuple[float, ...], steps: int, config: Path | None, out: Path, recalc: bool
) -> None:
    """Write the workbook: a Setup sheet, one sheet per learning rate, and Error vs LR."""
    lrs = check_learning_rates(list(etas) or list(DEFAULT_LRS))
    check_steps(steps)
    values = load_values(config)
    if out == DEFAULT_OUT:  # outputs/ is not in a fresh checkout; any other folder must exist
        with contextlib.suppress(OSError):  # if it cannot be made, writing says why, in one line
            out.parent.mkdir(exist_ok=True)

    from .writer import build_workbook

    summary = build_workbook(values, lrs, steps, out, recalc=recalc)
    click.echo(summary)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False), default=DEFAULT_OUT)
@click.option(
    "--engine",
    type=click.Choice(["auto", "cached", "libreoffice"]),
    default="auto",
    show_default=True,
    help="Where the values come from: values cached by Excel/LibreOffice, or a headless "
    "LibreOffice recalculation of a copy; auto uses cached values when the file has them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report (or the error) as JSON.")
def verify(path: Path, engine: str, as_json: bool) -> None:
    """Recompute every LR sheet in NumPy and check every computed cell and formula of PATH.

    \b
    Exit status:
      0  the workbook is correct
      1  the workbook is wrong (each wrong cell or formula is listed)
      2  it cannot be checked (unreadable, damaged or hostile file, no values
         and no LibreOffice); one line `error: …`, or {"ok": false, "error": …}
         with --json
    """
    from .verify import verify_workbook

    try:
        report = verify_workbook(path, engine=engine)
    except BpxlError as exc:
        _cannot_verify(path, str(exc), as_json)
    except Exception as exc:  # a bug in bpxl: still one line, still exit 2
        _cannot_verify(path, f"internal error: {type(exc).__name__}: {exc}", as_json)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.text())
    if not report.ok:
        raise click.exceptions.Exit(1)


def _cannot_verify(path: Path, message: str, as_json: bool) -> NoReturn:
    """Exit 2 with one line: `error: …` on stderr, or a JSON object on stdout with --json."""
    message = _one_line(message)
    if as_json:
        click.echo(json.dumps({"path": str(path), "ok": False, "error": message}))
        raise click.exceptions.Exit(2)
    raise BpxlError(message)


def main() -> None:
    cli()
