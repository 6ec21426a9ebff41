"""Runs one LibreOffice conversion for bpxl, and ends it when bpxl ends, however bpxl ends.

    python lo_guard.py FD FOLDER SOFFICE ARGS…

bpxl holds the write end of a pipe whose read end is FD here. A process killed by SIGKILL runs
no cleanup, but the kernel closes its files: the read then returns, and this guard kills
LibreOffice's process group and removes FOLDER (profile, copy, output). Without it, a `kill -9`
of bpxl left soffice.bin converting for ~20 s more. Standard library only (python -I -S), so it
starts in ~20 ms and imports nothing of bpxl.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    """Run SOFFICE ARGS in its own process group (soffice and the soffice.bin it starts).

    When LibreOffice ends on its own, kill what is left of its group (a helper it started) and
    end the way it did: the same exit code, or the same signal."""
    fd, folder, cmd = int(argv[1]), argv[2], argv[3:]
    try:  # its own process group, so that killing it reaches soffice.bin too, but not us
        # (preexec_fn, not process_group=0, which needs Python 3.11; no thread runs yet)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=os.setpgrp)
    except OSError as exc:
        print(f"cannot start LibreOffice ({cmd[0]}): {exc.strerror or exc}", file=sys.stderr)
        return 126

    gone = threading.Event()

    def owner_gone() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 1):
                pass
        gone.set()
        _kill_group(proc.pid)  # bpxl is gone, or closed the pipe: it wants LibreOffice gone
        with contextlib.suppress(Exception):
            proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
        os._exit(137)

    watch = threading.Thread(target=owner_gone, daemon=True)
    watch.start()
    code = proc.wait()
    if gone.is_set():  # killed for bpxl's sake: let the watch remove the folder, then exit
        watch.join()
    _kill_group(proc.pid)
    if code < 0:  # end as LibreOffice did, so bpxl can say it crashed or was killed
        with contextlib.suppress(OSError, ValueError):  # SIGKILL's cannot be set: no need
            signal.signal(-code, signal.SIG_DFL)
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the crash was not ours
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
