"""Atomic file output: a file the user asked for is either the old one or the complete new one.

Writing straight onto the target would leave a truncated workbook behind when a write fails
halfway (disk full, Ctrl-C, a LibreOffice crash), and the user's previous, good file would be gone.
So every output goes to a temporary file in the same folder (same filesystem, so the final
`os.replace` is atomic) and only replaces the target once it is complete and on disk.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from backprop_xlsx.errors import BpxlError


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def output_path(path: Path | str) -> Path:
    """The file that writing `path` replaces: `path` itself, or a symlink's existing target.

    A symbolic link is followed (its target is replaced, the link stays); a dangling one is
    refused, as is anything but a regular file: opening a FIFO to read or write it would
    block until another program opens its other end.
    """
    path = Path(path)
    if path.is_symlink():
        target = path.resolve()
        if not target.exists():
            raise BpxlError(f"cannot write {path}: it is a symbolic link to {target}, missing")
        path = target
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there: the folder check says why
        return path
    except OSError as exc:
        raise BpxlError(f"cannot write {path}: {_reason(exc)}") from None
    if stat.S_ISDIR(mode):
        raise BpxlError(f"cannot write {path}: it is a folder")
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise BpxlError(f"cannot write {path}: it is {kind}, not a regular file")
    return path


def make_folders(folder: Path | str) -> list[Path]:
    """Create `folder` and missing parents; returns those created, outermost first.

    One line (BpxlError) when that is impossible: a parent is a regular file, or not writable.
    """
    folder = Path(folder)
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists() or candidate.is_symlink():
            break
        missing.append(candidate)
    missing.reverse()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        remove_empty_folders(missing)
        raise BpxlError(f"cannot make folder {folder}: {_reason(exc)}") from None
    return missing


def remove_empty_folders(created: list[Path]) -> None:
    """Undo `make_folders`: remove the folders it made, innermost first, while they are empty."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            return


def _check_writable_folder(path: Path) -> Path:
    """Fail early, with one line, when `path` cannot be written (not after minutes of work)."""
    folder = path.parent
    if path.is_dir():
        raise BpxlError(f"cannot write {path}: it is a folder")
    if not folder.exists():
        raise BpxlError(f"cannot write {path}: folder {folder} does not exist")
    if not folder.is_dir():
        raise BpxlError(f"cannot write {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BpxlError(f"cannot write {path}: folder {folder} is not writable")
    return folder


def _target_mode(path: Path) -> int:
    """Mode for the new file: the existing file's mode, else 0o666 minus the umask (like open())."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; not possible on every OS/filesystem, so best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success move it onto `path`, on error discard it.

    The caller writes the complete file to the yielded path (by any means: its own open(), a
    zipfile, a subprocess). On normal exit the file is fsynced and atomically renamed onto `path`;
    if the block raises, the temporary file is removed and an existing `path` is left untouched.
    """
    path = output_path(path)
    folder = _check_writable_folder(path)
    # Named before it exists and created inside the try, so a Ctrl-C or SIGTERM at any moment
    # after the file appears still reaches the cleanup below (tempfile.mkstemp returns the name
    # only after creating the file, which left a window). 64 random bits: O_EXCL never clashes.
    tmp = folder / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            raise BpxlError(f"cannot write {path}: {_reason(exc)}") from exc
        yield tmp
        if not tmp.is_file():
            raise BpxlError(f"cannot write {path}: the temporary file {tmp} was not produced")
        try:
            os.chmod(tmp, _target_mode(path))
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise BpxlError(f"cannot write {path}: {_reason(exc)}") from exc
        _fsync_folder(folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_output`)."""
    with atomic_output(Path(path)) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as exc:
            raise BpxlError(f"cannot write {path}: {_reason(exc)}") from exc


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically (see `atomic_output`); newlines are written as given."""
    atomic_write_bytes(path, text.encode(encoding))


# bpxl's folders in the temp folder: bpxl-<kind>-<pid of the bpxl that made it>-<random>.
_TEMP_FOLDER = re.compile(r"bpxl-[a-z]+-(\d+)-")
STALE_AFTER = 60.0  # seconds without a change before a dead owner's folder is removed


def make_temp_folder(kind: str) -> Path:
    """A new folder in the temp folder, named with this process's pid so that a later run can
    tell it is stale once this process is gone (sweep_stale_folders runs first)."""
    sweep_stale_folders()
    return Path(tempfile.mkdtemp(prefix=f"bpxl-{kind}-{os.getpid()}-"))


@contextlib.contextmanager
def temp_folder(kind: str) -> Iterator[Path]:
    """make_temp_folder, removed again at the end."""
    folder = make_temp_folder(kind)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether process `pid` exists (another user's counts: it cannot be checked)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def sweep_stale_folders(folder: Path | None = None) -> list[Path]:
    """Remove the temp folders of bpxl runs that are gone; returns them.

    A bpxl killed outright cannot clean up (LibreOffice's guard removes its own conversion
    folder, not the ones around it). Only this user's folders whose owner process no longer
    exists and in which nothing changed for STALE_AFTER seconds: a live run's folder is never
    touched. POSIX only (on Windows os.kill(pid, 0) would end the process).
    """
    if os.name != "posix":
        return []
    folder = Path(folder or tempfile.gettempdir())
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed = []
    now = time.time()
    for entry in entries:
        match = _TEMP_FOLDER.match(entry.name)
        if not match:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            inner = Path(entry.path, "profile", "user")  # where LibreOffice writes as it runs
            changed = max(info.st_mtime, inner.stat().st_mtime if inner.is_dir() else 0.0)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        if now - changed < STALE_AFTER or _alive(int(match[1])):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed
