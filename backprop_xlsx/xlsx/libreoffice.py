"""LibreOffice, headless, as the real spreadsheet engine: recalculate workbooks and render them.

openpyxl writes formulas but cannot compute them, so a fresh workbook has no cached values (or
stale ones); LibreOffice computes them, which makes the workbook checkable against NumPy without
Excel. Headless LibreOffice trusts cached values, so each call runs with its own throwaway user
profile that sets "always recalculate on load"; a private profile also means concurrent calls
never share an instance or a lock.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from backprop_xlsx.errors import BpxlError
from backprop_xlsx.xlsx.fileio import atomic_output, make_temp_folder, temp_folder

if TYPE_CHECKING:
    from backprop_xlsx.xlsx.read import Package

XLSX_FILTER = "xlsx:Calc MS Excel 2007 XML"
PDF_FILTER = "pdf:calc_pdf_Export"

_COMMON_PATHS = (
    "/usr/bin/soffice",
    "/usr/local/bin/soffice",
    "/usr/lib/libreoffice/program/soffice",
    "/opt/libreoffice*/program/soffice",
    "/snap/bin/libreoffice",
    "/Applications/LibreOffice.app/Contents/MacOS/soffice",
    r"C:\Program Files\LibreOffice\program\soffice.exe",
    r"C:\Program Files (x86)\LibreOffice\program\soffice.exe",
)

NOT_INSTALLED = (
    "LibreOffice is not installed: install it (e.g. apt-get install -y libreoffice-calc-nogui) "
    "or set BPXL_SOFFICE to its soffice binary, or open and save the workbook in "
    "Excel/LibreOffice, then retry"
)

# 0 = always recalculate on load, 1 = never, 2 = ask (headless: never). Both file families.
_PROFILE_XCU = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry"
 xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" \
oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="ODFRecalcMode" \
oor:op="fuse"><value>0</value></prop></item>
</oor:items>
"""

# Noise LibreOffice prints on healthy runs; kept out of error messages.
_NOISE = re.compile(r"javaldx|^convert .* using filter", re.IGNORECASE)


def find_soffice() -> str | None:
    """Locate the LibreOffice binary: $BPXL_SOFFICE, then PATH, then usual install folders.

    A set but unusable BPXL_SOFFICE is an error rather than a silent fallback, so a user who
    points at a specific LibreOffice never gets a different one.
    """
    override = os.environ.get("BPXL_SOFFICE", "").strip()
    if override:
        found = shutil.which(override)
        if found is None:
            raise BpxlError(f"BPXL_SOFFICE={override} is not an executable LibreOffice binary")
        return found
    for name in ("soffice", "libreoffice"):
        found = shutil.which(name)
        if found:
            return found
    for pattern in _COMMON_PATHS:
        for candidate in sorted(glob.glob(pattern)):
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    return None


def _require_soffice() -> str:
    found = find_soffice()
    if found is None:
        raise BpxlError(NOT_INSTALLED)
    return found


def _check_package(src: Path) -> Path:
    """LibreOffice opens nearly anything (a text file becomes a CSV import), so insist on a zip."""
    src = Path(src)
    if not src.exists():
        raise BpxlError(f"cannot read {src}: no such file")
    if not src.is_file():
        raise BpxlError(f"cannot read {src}: not a file")
    try:
        ok = zipfile.is_zipfile(src)
    except OSError as exc:
        raise BpxlError(f"cannot read {src}: {exc.strerror or exc}") from exc
    if not ok:
        raise BpxlError(f"cannot read {src}: not an xlsx/ods workbook (not a zip package)")
    return src


@contextlib.contextmanager
def _session(src: Path) -> Iterator[tuple[Path, Path, Path]]:
    """A throwaway folder with a private profile, a copy of `src` and an empty output folder."""
    root = make_temp_folder("lo")
    try:
        profile_user = root / "profile" / "user"
        profile_user.mkdir(parents=True)
        (profile_user / "registrymodifications.xcu").write_text(_PROFILE_XCU, encoding="utf-8")
        suffix = src.suffix.lower() if re.fullmatch(r"\.[a-z0-9]{1,5}", src.suffix.lower()) else ""
        work_copy = root / f"book{suffix or '.xlsx'}"
        try:
            shutil.copyfile(src, work_copy)
        except OSError as exc:
            raise BpxlError(f"cannot read {src}: {exc.strerror or exc}") from exc
        outdir = root / "out"
        outdir.mkdir()
        yield root / "profile", work_copy, outdir
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _tail(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not _NOISE.search(ln)]
    joined = " | ".join(lines)
    return joined[-limit:] if joined else "no message"


def _convert(
    src: Path, target_filter: str, ext: str, timeout: float, what: str, label: str | None = None
) -> bytes:
    """Run one headless conversion of `src` and return the produced file's bytes.

    `label` names `src` in messages (a temporary copy means nothing to the user).
    """
    src = _check_package(src)
    name = label or str(src)
    soffice = _require_soffice()
    with _session(src) as (profile, work_copy, outdir):
        cmd = [
            soffice,
            f"-env:UserInstallation={profile.resolve().as_uri()}",
            "--headless",
            "--invisible",
            "--norestore",
            "--nolockcheck",
            "--nodefault",
            "--nologo",
            "--convert-to",
            target_filter,
            "--outdir",
            str(outdir),
            str(work_copy),
        ]
        env = dict(os.environ)
        env.setdefault("HOME", str(profile))  # LibreOffice wants a HOME even with a profile
        # Its own temp folder inside the session, removed with it even if LibreOffice is killed
        # (it leaves lu*.tmp files behind then).
        private_tmp = profile.parent / "tmp"
        private_tmp.mkdir()
        env.update(TMPDIR=str(private_tmp), TMP=str(private_tmp), TEMP=str(private_tmp))
        # Output to a file, not pipes: a helper that outlives the wrapper would hold pipes open
        # and make reading them wait for it.
        log_path = profile.parent / "log.txt"
        with open(log_path, "wb") as log_file:
            proc = _start(cmd, log_file, env, outdir, profile.parent)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise BpxlError(
                    f"LibreOffice did not finish {what} {name} within {timeout:g} s "
                    "(raise the timeout, or check that the workbook opens in LibreOffice)"
                ) from None
            finally:
                # Always, also after Ctrl-C or SIGTERM (cli.Terminated) and after a clean exit
                # of the wrapper: a crashed run can leave soffice.bin or a helper behind.
                _kill_group(proc)
        log = log_path.read_bytes()[-20_000:].decode("utf-8", "replace")
        produced = outdir / f"{work_copy.stem}.{ext}"
        if proc.guarded and proc.returncode == _CANNOT_START and "cannot start" in log:
            raise BpxlError(_tail(log))
        if proc.returncode < 0:  # killed by a signal: a crash, or someone killed it
            raise BpxlError(f"LibreOffice {_how(proc.returncode)} while {what} {name}{_said(log)}")
        if proc.returncode != 0 or not produced.is_file() or produced.stat().st_size == 0:
            raise BpxlError(
                f"LibreOffice failed {what} {name} (exit code {proc.returncode}): {_tail(log)}"
            )
        return produced.read_bytes()


class _Run(subprocess.Popen):  # type: ignore[type-arg]
    """A LibreOffice run; `owner_pipe` is the write end its guard watches while it runs."""

    guarded = False
    owner_pipe: int | None = None


_GUARD = Path(__file__).with_name("lo_guard.py")
_CANNOT_START = 126  # the guard's exit code when soffice cannot be started


def _start(cmd: list[str], log: IO[bytes], env: dict[str, str], cwd: Path, folder: Path) -> _Run:
    """LibreOffice in its own session. On POSIX through lo_guard.py, which ends it (and removes
    `folder`) when this process ends, even by SIGKILL."""
    common = dict(stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
    if os.name != "posix" or not _GUARD.is_file():
        try:
            proc = _Run(cmd, start_new_session=True, **common)  # type: ignore[arg-type]
        except OSError as exc:
            raise BpxlError(f"cannot start LibreOffice ({cmd[0]}): {exc.strerror or exc}") from exc
        _LIVE.add(proc)
        return proc
    read_end, write_end = os.pipe()  # not inherited: only the guard gets read_end
    try:
        guard = [sys.executable, "-I", "-S", str(_GUARD), str(read_end), str(folder), *cmd]
        proc = _Run(guard, pass_fds=(read_end,), start_new_session=True, **common)  # type: ignore[arg-type]
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    proc.guarded, proc.owner_pipe = True, write_end
    _LIVE.add(proc)
    return proc


def _how(returncode: int) -> str:
    """`crashed (SIGSEGV)` or `was killed by SIGKILL`, for a negative return code."""
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    crashes = {"SIGSEGV", "SIGBUS", "SIGABRT", "SIGILL", "SIGFPE"}
    return f"crashed ({name})" if name in crashes else f"was killed by {name}"


def _said(log: str) -> str:
    tail = _tail(log)
    return "" if tail == "no message" else f": {tail}"


# LibreOffice runs not yet reaped: killed at interpreter exit if something skipped the kill.
_LIVE: set[_Run] = set()


def _kill_group(proc: _Run) -> None:
    """End LibreOffice: its guard kills its process group once the pipe closes; then, or
    without a guard, kill the run's own group and reap it."""
    if proc.owner_pipe is not None:
        with contextlib.suppress(OSError):
            os.close(proc.owner_pipe)
        proc.owner_pipe = None
        with contextlib.suppress(Exception):
            proc.wait(timeout=10)
    with contextlib.suppress(OSError):
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        elif proc.poll() is None:
            proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)
    _LIVE.discard(proc)


@atexit.register
def _kill_live() -> None:
    for proc in list(_LIVE):
        _kill_group(proc)


def recalculate(src: Path, dst: Path, *, timeout: float = 600, label: str | None = None) -> Path:
    """Write `dst`: `src` with every formula recalculated by LibreOffice and the values cached.

    Formulas are kept. Stale or wrong cached values in `src` are ignored (full recalculation on
    load is forced). `src` may equal `dst`; `dst` is replaced atomically, so it is either the old
    file or the complete new one. `label` names `src` in error messages. Returns `dst`.

    Precision (LibreOffice 7.4): the computation is in doubles, but the saved xlsx holds every
    number, computed or typed in, rounded to 15 significant digits (relative error up to ~5e-15),
    and nearly-cancelling sums snap to 0 (`=0.1+0.2-0.3` gives 0, Python 5.55e-17): compare
    differences near 0 with an absolute tolerance too.
    """
    dst = Path(dst)
    with atomic_output(dst) as tmp:  # checks the folder is writable before minutes of work
        tmp.write_bytes(_convert(Path(src), XLSX_FILTER, "xlsx", timeout, "recalculating", label))
    return dst


def open_recalculated(src: Path, stack: contextlib.ExitStack, label: str = "verify") -> Package:
    """A LibreOffice-recalculated copy of `src`, opened for reading; the copy is closed and
    removed when `stack` closes. The one recalculation the verifier's checks read from."""
    from backprop_xlsx.xlsx.read import Package

    folder = stack.enter_context(temp_folder(label))
    copy = Package(recalculate(src, folder / "recalculated.xlsx"))
    stack.callback(copy.close)
    return copy


def export_pdf(
    src: Path, dst_pdf: Path, *, timeout: float = 600, single_page_sheets: bool = False
) -> Path:
    """Render `src` as LibreOffice prints it (every sheet, charts included) to `dst_pdf`.

    Formulas are recalculated first, so the picture shows current values. Sheets print in
    workbook order, each split into pages by its page setup (paper size, orientation, print
    area, fit-to-page); with `single_page_sheets` every sheet becomes one page exactly as large
    as its used area and drawings, and the print area and fit-to-page are ignored.
    """
    pdf_filter = PDF_FILTER
    if single_page_sheets:
        options = {"SinglePageSheets": {"type": "boolean", "value": "true"}}
        pdf_filter += ":" + json.dumps(options, separators=(",", ":"))
    dst_pdf = Path(dst_pdf)
    with atomic_output(dst_pdf) as tmp:
        tmp.write_bytes(_convert(Path(src), pdf_filter, "pdf", timeout, "exporting to PDF"))
    return dst_pdf


def pdf_to_png(
    pdf: Path,
    out_prefix: Path,
    *,
    dpi: int = 110,
    first_page: int = 1,
    last_page: int | None = None,
    timeout: float = 300,
) -> list[Path]:
    """Rasterise PDF pages with pdftoppm into `<out_prefix>-<page>.png`, returned in page order.

    Page numbers in the names are not zero-padded (unlike pdftoppm's own naming, which depends
    on the page count), so callers and READMEs can rely on stable file names.
    """
    pdf, out_prefix = Path(pdf), Path(out_prefix)
    if not pdf.is_file():
        raise BpxlError(f"cannot read {pdf}: no such file")
    if dpi <= 0 or first_page < 1 or (last_page is not None and last_page < first_page):
        raise BpxlError(
            f"bad page range or dpi for {pdf}: dpi={dpi}, pages {first_page}..{last_page}"
        )
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        raise BpxlError(
            "pdftoppm is not installed: install poppler-utils (apt-get install -y poppler-utils)"
        )
    folder = out_prefix.parent
    if not folder.is_dir():
        raise BpxlError(f"cannot write {out_prefix}-*.png: folder {folder} does not exist")
    cmd = [pdftoppm, "-png", "-r", str(dpi), "-f", str(first_page)]
    if last_page is not None:
        cmd += ["-l", str(last_page)]
    with tempfile.TemporaryDirectory(prefix=".bpxl-png-", dir=folder) as tmpdir:
        try:
            proc = subprocess.run(
                [*cmd, str(pdf), str(Path(tmpdir) / "p")],
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BpxlError(f"pdftoppm did not finish {pdf} within {timeout:g} s") from None
        except OSError as exc:
            raise BpxlError(f"cannot run pdftoppm: {exc.strerror or exc}") from exc
        pages = sorted(
            (int(m.group(1)), p)
            for p in Path(tmpdir).iterdir()
            if (m := re.fullmatch(r"p-0*(\d+)\.png", p.name))
        )
        if proc.returncode != 0 or not pages:
            raise BpxlError(
                f"pdftoppm failed on {pdf} (exit code {proc.returncode}): "
                f"{_tail(proc.stderr.decode('utf-8', 'replace'))}"
            )
        results: list[Path] = []
        for number, produced in pages:
            target = folder / f"{out_prefix.name}-{number}.png"
            os.replace(produced, target)
            results.append(target)
    return results
