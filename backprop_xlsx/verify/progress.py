"""One progress bar for a long job, on a terminal only, after the job has run `DELAY` seconds.

`bpxl verify` on a wide network or a long run takes from seconds to minutes (reading the sheets,
a LibreOffice recalculation, the formulas on changed inputs), and a silent terminal looks hung.
The bar goes to stderr and appears only when both stdout and stderr are terminals, so --json,
pipes and files never get one. A thread refreshes it while one step blocks
(LibreOffice), so the elapsed time keeps moving.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from types import TracebackType
from typing import TextIO

DELAY = 2.0  # seconds before the bar appears: quick jobs stay quiet
TICK = 0.5  # seconds between refreshes while a step blocks


def on_terminal(*streams: TextIO) -> bool:
    """True when every stream is an interactive terminal."""
    for stream in streams:
        try:
            if not stream.isatty():
                return False
        except (AttributeError, ValueError):  # replaced or closed streams
            return False
    return True


class Progress:
    """A job's share done, 0 to 1, with the name of its current step; nothing when disabled.

    Steps advance by fractions of the whole (`advance(0.25)`), so a job can weigh its parts
    before it knows their sizes.
    """

    def __init__(self, enabled: bool, what: str = "", stream: TextIO | None = None) -> None:
        self.bar = None
        self.what = what
        self._stop = threading.Event()
        if not enabled:
            return
        from tqdm import tqdm

        size = shutil.get_terminal_size((80, 24))
        self.bar = tqdm(
            total=1.0,
            desc=what,
            file=stream or sys.stderr,
            delay=DELAY,
            leave=False,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}",
            # the terminal's size (or COLUMNS and LINES); 80×24 where a terminal reports 0×0 (a
            # pty nobody sized), on which tqdm would draw nothing at all
            ncols=size.columns or 80,
            nrows=size.lines or 24,
        )
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        bar = self.bar
        while not self._stop.wait(TICK):
            if time.time() >= bar.start_t + DELAY:
                bar.refresh()
                bar.last_print_t = time.time()  # so close() knows to clear the line

    def step(self, text: str) -> None:
        """Name what is being done now."""
        if self.bar is not None:
            self.bar.set_description_str(f"{self.what} ({text})", refresh=False)

    def advance(self, share: float) -> None:
        """`share` more of the whole job is done."""
        if self.bar is not None:
            self.bar.update(min(share, self.bar.total - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self._stop.set()
            self._ticker.join()
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


QUIET = Progress(False)
