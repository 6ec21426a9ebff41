"""verify's progress bar: on a terminal for a long check, never with --json or through a pipe."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backprop_xlsx.mlp import description
from backprop_xlsx.mlp.workbook import build_workbook
from backprop_xlsx.verify.progress import DELAY

ROOT = Path(__file__).resolve().parents[1]
BAR = "verify ("  # the bar, as tqdm draws it: "verify (values against NumPy):  90%|███ | 00:03"


@pytest.fixture(scope="module")
def long_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workbook whose verify runs past DELAY: a LibreOffice recalculation of 2,000 rows."""
    out = tmp_path_factory.mktemp("progress") / "xor.xlsx"
    build_workbook(description.preset("xor"), [0.5, 1.0], 1000, out)
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}


def _on_a_terminal(*args: str) -> tuple[int, str, float]:
    """Exit status, everything written to the terminal, and seconds taken, of `bpxl verify`
    run with stdout and stderr on a pseudo-terminal."""
    start = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdin, stdout and stderr are the terminal
        os.execve(sys.executable, [sys.executable, "-m", "backprop_xlsx", "verify", *args], _env())
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(), time.monotonic() - start


def test_a_long_verify_shows_progress_on_a_terminal(long_check: Path, soffice: str) -> None:
    code, shown, seconds = _on_a_terminal(str(long_check))
    assert code == 0, shown
    assert seconds > DELAY + 1, "the check must outlast the delay for the bar to appear"
    assert BAR in shown and "%|" in shown, shown
    assert "OK (values from a LibreOffice recalculation" in shown


def test_json_on_a_terminal_has_no_bar(long_check: Path, soffice: str) -> None:
    code, shown, _ = _on_a_terminal(str(long_check), "--json")
    assert code == 0
    assert BAR not in shown and "%|" not in shown
    assert json.loads(shown)["ok"] is True


def test_a_pipe_gets_no_bar(long_check: Path, soffice: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "backprop_xlsx", "verify", str(long_check)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    assert BAR not in done.stdout and "%|" not in done.stdout
