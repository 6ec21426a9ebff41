"""The real `bpxl` in its own process: failures are one line, signals clean up, nothing lingers.

Real witnesses only: a full tmpfs and a file-size limit for a disk that fills up, a path below a
regular file for permission denied, a LibreOffice stand-in that kills itself or segfaults, and
real signals sent to a real build and to a real LibreOffice run. Every run gets a private TMPDIR,
so "nothing left behind" is checked there too.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _cli import processes, start, wait_for
from _seed import seed

from backprop_xlsx.mlp.workbook import build_workbook

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _env(tmpdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BPXL_SOFFICE"}
    env.update(PYTHONPATH=str(ROOT), TMPDIR=str(tmpdir), PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def _run(
    args: list[str],
    tmpdir: Path,
    preexec_fn: Callable[[], None] | None = None,
    python: list[str] | None = None,
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(python or [sys.executable, "-m", "backprop_xlsx"]), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(tmpdir, **extra),
        preexec_fn=preexec_fn,
    )


@pytest.fixture
def private_tmp(tmp_path: Path) -> Path:
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    return folder


def _one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- help and bad output paths -----------------------------------------------------------------


def test_bare_bpxl_prints_its_help(private_tmp: Path) -> None:
    done = _run([], private_tmp)
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Usage: ") and len(lines) > 15
    assert "Commands:" in lines and any(ln.strip().startswith("build") for ln in lines)
    assert "Exit codes:" in [ln.strip() for ln in lines]
    assert any(ln.strip().startswith("143") or "143 terminated" in ln for ln in lines)


def test_a_fifo_as_out_is_refused_without_hanging(tmp_path: Path, private_tmp: Path) -> None:
    fifo = tmp_path / "pipe.xlsx"
    os.mkfifo(fifo)
    done = _run(["build", "--steps", "2", "--out", str(fifo)], private_tmp)  # timeout=120
    assert done.returncode == 2
    assert _one_error_line(done.stderr) == (
        f"error: cannot write {fifo}: it is a FIFO (named pipe), not a regular file"
    )


def test_a_symlink_as_out_replaces_its_target(tmp_path: Path, private_tmp: Path) -> None:
    target = tmp_path / "real" / "book.xlsx"
    target.parent.mkdir()
    build_workbook(seed(), [0.5], 2, target)
    link = tmp_path / "link.xlsx"
    link.symlink_to(target)
    done = _run(["build", "--lr", "0.1", "--steps", "2", "--out", str(link)], private_tmp)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {link} (→ {target}): 1 learning-rate sheet")
    assert link.is_symlink() and link.resolve() == target
    assert sorted(p.name for p in target.parent.iterdir()) == ["book.xlsx"]


def test_missing_folders_are_made_for_any_out_and_removed_on_failure(
    tmp_path: Path, private_tmp: Path
) -> None:
    out = tmp_path / "new" / "deeper" / "book.xlsx"
    done = _run(["build", "--steps", "2", "--out", str(out)], private_tmp)
    assert done.returncode == 0, done.stderr
    assert out.is_file() and done.stdout.splitlines()[-1] == f"made folder {out.parent}"
    failed = tmp_path / "other" / "deeper" / "book.xlsx"
    done = _run(["build", "--lr", "1e308", "--out", str(failed)], private_tmp)
    assert done.returncode == 2 and "overflows" in _one_error_line(done.stderr)
    assert not (tmp_path / "other").exists()
    below_a_file = tmp_path / "new" / "deeper" / "book.xlsx" / "x" / "b.xlsx"
    done = _run(["build", "--out", str(below_a_file)], private_tmp)  # even root cannot
    assert done.returncode == 2
    assert _one_error_line(done.stderr) == (
        f"error: cannot make folder {below_a_file.parent}: Not a directory"
    )


# --- a disk that fills up ------------------------------------------------------------------


def _assert_clean_failure(done: subprocess.CompletedProcess[str], out: Path, old: bytes) -> str:
    assert done.returncode == 2, done.stderr
    line = _one_error_line(done.stderr)
    assert out.read_bytes() == old  # the previous workbook is untouched
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]
    return line


def test_disk_full_is_one_line(tmp_path: Path, private_tmp: Path) -> None:
    """A real full filesystem: a 200 KiB tmpfs (mounting needs root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs: {mounted.stderr.decode().strip() or 'not root'}"
        if IN_CI:
            pytest.fail(f"{reason} (required in CI)")
        pytest.skip(reason)
    try:
        out = disk / "book.xlsx"
        build_workbook(seed(), [0.5], 2, out)
        old = out.read_bytes()
        done = _run(["build", "--steps", "3000", "--out", str(out)], private_tmp)
        line = _assert_clean_failure(done, out, old)
        assert line == f"error: cannot write {out}: No space left on device"
        assert list(private_tmp.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_file_size_limit_is_one_line(tmp_path: Path, private_tmp: Path) -> None:
    """RLIMIT_FSIZE: the kernel refuses writes past 256 KiB (EFBIG), as for any user."""
    out = tmp_path / "out" / "book.xlsx"
    out.parent.mkdir()
    build_workbook(seed(), [0.5], 2, out)
    old = out.read_bytes()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

    done = _run(["build", "--steps", "3000", "--out", str(out)], private_tmp, preexec_fn=limit)
    line = _assert_clean_failure(done, out, old)
    assert line == f"error: cannot write {out}: File too large"


# --- LibreOffice that crashes or is killed ---------------------------------------------------


@pytest.mark.parametrize(
    ("how", "said"), [("KILL", "was killed by SIGKILL"), ("SEGV", "crashed (SIGSEGV)")]
)
def test_a_libreoffice_that_dies_is_one_line_and_leaves_nothing(
    tmp_path: Path, private_tmp: Path, how: str, said: str
) -> None:
    marker = f"{os.getpid()}{len(how)}7.25"  # a helper it leaves running, found by its argument
    fake = tmp_path / "soffice"
    fake.write_text(f"#!/bin/sh\nsleep {marker} &\nkill -{how} $$\n")
    fake.chmod(0o755)
    out = tmp_path / "out" / "book.xlsx"
    out.parent.mkdir()
    done = _run(["build", "--recalc", "--steps", "2", "--out", str(out)], private_tmp,
                BPXL_SOFFICE=str(fake))  # fmt: skip
    assert done.returncode == 2
    assert _one_error_line(done.stderr) == (
        f"error: LibreOffice {said} while recalculating the new workbook for {out}"
    )
    assert list(out.parent.iterdir()) == [] and list(private_tmp.iterdir()) == []
    assert processes(marker) == {}  # its process group was killed with it


def test_an_internal_error_is_one_line(tmp_path: Path, private_tmp: Path) -> None:
    """A bug (here: injected into the writer) still ends in one line, exit 2, nothing left."""
    inject = (
        "import backprop_xlsx.mlp.workbook as w\n"
        "def broken(*args, **kwargs):\n"
        "    return {}['no such key']\n"
        "w.write_workbook = broken\n"
        "from backprop_xlsx.cli import main\n"
        "main()\n"
    )
    out = tmp_path / "book.xlsx"
    done = _run(["build", "--out", str(out)], private_tmp, python=[sys.executable, "-c", inject])
    assert done.returncode == 2
    assert _one_error_line(done.stderr) == (
        "error: internal error: KeyError: 'no such key' (a bug in bpxl: please report it with "
        "the command you ran)"
    )
    assert list(tmp_path.iterdir()) == [private_tmp] and list(private_tmp.iterdir()) == []


# --- signals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [
        (signal.SIGTERM, 143, "error: terminated by SIGTERM"),
        (signal.SIGINT, 130, "error: interrupted"),
    ],
)
def test_a_signal_mid_build_leaves_nothing(
    tmp_path: Path, private_tmp: Path, sig: int, code: int, said: str
) -> None:
    out = tmp_path / "out" / "book.xlsx"
    out.parent.mkdir()
    build_workbook(seed(), [0.5], 2, out)
    old = out.read_bytes()
    proc = start(["build", "--lr", "0.1", "--steps", "20000", "--out", str(out)], _env(private_tmp))
    try:

        def writing() -> bool:
            temps = [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
            return bool(temps) and temps[0].stat().st_size > 100_000

        assert wait_for(writing, 120), "timed out waiting for the build to write its temporary file"
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    assert stderr == said + "\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["book.xlsx"]
    assert out.read_bytes() == old
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("command", ["build", "verify"])
def test_sigterm_during_libreoffice_kills_it(
    soffice: str, tmp_path: Path, private_tmp: Path, command: str
) -> None:
    """`timeout` sends SIGTERM: LibreOffice must not outlive bpxl, nor its temp folder."""
    out = tmp_path / "out" / "book.xlsx"
    out.parent.mkdir()
    if command == "build":
        args = ["build", "--recalc", "--lr", "0.5", "--steps", "5000", "--out", str(out)]
    else:
        build_workbook(seed(), [0.5], 5000, out)
        args = ["verify", "--engine", "libreoffice", str(out)]
    before = sorted(p.name for p in out.parent.iterdir())
    proc = start(args, _env(private_tmp, BPXL_SOFFICE=soffice))
    try:
        assert wait_for(lambda: processes(str(private_tmp)) != {}, 120), "LibreOffice never started"
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert _one_error_line(stderr) == "error: terminated by SIGTERM"
    assert wait_for(lambda: processes(str(private_tmp)) == {}, 10), processes(str(private_tmp))
    assert sorted(p.name for p in out.parent.iterdir()) == before
    assert list(private_tmp.iterdir()) == []
