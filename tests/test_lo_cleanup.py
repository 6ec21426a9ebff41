"""A bpxl killed outright (SIGKILL: no handler, no cleanup) leaves no LibreOffice running, and
the next run removes the temp folders it left. Real witnesses: a real `bpxl verify` with a real
LibreOffice, a real SIGKILL, and /proc for what still runs. Every run gets a private TMPDIR."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _cli import processes, start, wait_for
from _seed import seed

from backprop_xlsx.mlp.workbook import build_workbook
from backprop_xlsx.xlsx.fileio import STALE_AFTER, sweep_stale_folders

ROOT = Path(__file__).resolve().parent.parent


def _env(tmpdir: Path, soffice: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmpdir), BPXL_SOFFICE=soffice)


@pytest.mark.slow
def test_a_killed_verify_leaves_no_libreoffice_and_the_next_run_sweeps(
    soffice: str, tmp_path: Path
) -> None:
    private = tmp_path / "tmpdir"
    private.mkdir()
    book = tmp_path / "book.xlsx"
    build_workbook(seed(), [0.1, 0.2, 0.5, 0.8, 1.0, 2.0], 4000, book)
    proc = start(["verify", "--engine", "libreoffice", str(book)], _env(private, soffice))
    ours = f"bpxl-lo-{proc.pid}-"
    try:
        started = wait_for(lambda: "soffice.bin" in processes(ours).values(), 120)
        assert started, "LibreOffice's worker, soffice.bin, never started"
        time.sleep(1.0)  # mid-recalculation: the workbook takes LibreOffice several seconds
        assert proc.poll() is None, "verify ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.communicate()
    assert wait_for(lambda: not processes(ours), 5), processes(ours)  # soffice.bin too
    assert not list(private.glob(f"{ours}*"))  # its guard removed the conversion's folder
    left = [p for p in private.iterdir() if f"-{proc.pid}-" in p.name]
    assert [p.name.split("-")[1] for p in left] == ["verify"]  # verify's own, beside it

    old = time.time() - STALE_AFTER - 5
    os.utime(left[0], (old, old))
    small = tmp_path / "small.xlsx"
    build_workbook(seed(), [0.5], 2, small)
    again = start(["verify", "--engine", "libreoffice", str(small)], _env(private, soffice))
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert list(private.iterdir()) == []  # the dead run's folder swept, the new run's removed


def test_the_sweep_removes_only_folders_of_gone_runs_left_alone_a_while(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid names no process now
    old = time.time() - STALE_AFTER - 5
    folders = {
        "stale": f"bpxl-lo-{gone.pid}-abc",
        "stale_verify": f"bpxl-verify-{gone.pid}-abc",
        "recent": f"bpxl-lo-{gone.pid}-new",
        "live": f"bpxl-lo-{os.getpid()}-abc",
        "busy": f"bpxl-lo-{gone.pid}-busy",  # its profile changed just now
        "unnamed": "bpxl-lo-abcdefgh",  # no pid: not known to be stale
        "other": f"other-{gone.pid}-abc",
    }
    for key, name in folders.items():
        (tmp_path / name / "profile" / "user").mkdir(parents=True)
        if key != "recent":
            os.utime(tmp_path / name, (old, old))
            if key != "busy":
                os.utime(tmp_path / name / "profile" / "user", (old, old))
    removed = sweep_stale_folders(tmp_path)
    assert sorted(p.name for p in removed) == sorted([folders["stale"], folders["stale_verify"]])
    left = {p.name for p in tmp_path.iterdir()}
    assert left == set(folders.values()) - {folders["stale"], folders["stale_verify"]}
