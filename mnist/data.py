"""MNIST from the four IDX files into tensors on the training device, checked on the way in.

The whole set is 55 MB as float32, so it lives on the device once and every batch is an index into
it: no per-sample PIL, no DataLoader workers. Every way a file can be wrong (missing, not gzip,
truncated, wrong magic, wrong shape, wrong bytes) ends in one `BpxlError` line, not a traceback.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backprop_xlsx.errors import BpxlError

# The usual normalisation constants of MNIST (pixel mean and std of the training set in [0, 1]).
MEAN, STD = 0.1307, 0.3081

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
COUNTS = {"train": 60_000, "test": 10_000}

# SHA-256 of the official uncompressed files; a SHA256SUMS file beside the data overrides these.
OFFICIAL_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

MAGIC_IMAGES = 0x00000803  # unsigned byte, 3 dimensions
MAGIC_LABELS = 0x00000801  # unsigned byte, 1 dimension

WHERE = (
    "put train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
    "t10k-labels-idx1-ubyte (gzipped or not) in one folder and pass --data-dir or set MNIST_DATA"
)


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzip (decided by its first bytes, not its name)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BpxlError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise BpxlError(f"{path} is a damaged or truncated gzip file ({exc}); {WHERE}") from exc


def parse_idx(data: bytes, name: str, magic: int) -> np.ndarray:
    """Check an IDX file's header against its length and return its uint8 array.

    IDX is a 4-byte big-endian magic (0x0000 0x08 ndim), ndim big-endian uint32 sizes, then the
    bytes. A header that promises more bytes than there are means a truncated download.
    """
    if len(data) < 4:
        raise BpxlError(f"{name} is too short to be an IDX file ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise BpxlError(
            f"{name} has magic number 0x{found:08x}, expected 0x{magic:08x}: "
            "not an MNIST IDX file of this kind"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise BpxlError(f"{name} is truncated inside its header ({len(data)} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise BpxlError(
            f"{name} is {what}: {len(data)} bytes, header {list(shape)} needs {expected}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def find_file(folder: Path, stem: str) -> Path | None:
    """`stem` or `stem.gz` in `folder` (torchvision's MNIST/raw layout also counts)."""
    for base in (folder, folder / "MNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (base / name).is_file():
                return base / name
    return None


def read_sums(folder: Path) -> dict[str, str]:
    """SHA256SUMS beside the files (`<hex>  <name>` lines), falling back to the official sums."""
    sums = dict(OFFICIAL_SHA256)
    path = folder / "SHA256SUMS"
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2:
                sums[parts[1].lstrip("*").removesuffix(".gz")] = parts[0].lower()
    return sums


def read_idx(path: Path, magic: int, sha256: str | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or not), checking magic, sizes and, if given, its SHA-256."""
    data = _read_bytes(path)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise BpxlError(f"{path} has the wrong SHA-256 (corrupt or not the MNIST file); {WHERE}")
    return parse_idx(data, str(path), magic)


@dataclass
class Mnist:
    """The four arrays as tensors: images float32 (N, 1, 28, 28) normalised, labels int64 (N,);
    and the test images as read, uint8 (10000, 784), for the workbook's digits sheet."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: Path
    test_pixels: np.ndarray


def read_split(folder: Path, split: str, sums: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of `train` or `test`, with counts and label range checked."""
    arrays = []
    for kind, magic in (("images", MAGIC_IMAGES), ("labels", MAGIC_LABELS)):
        stem = FILES[f"{split}_{kind}"]
        path = find_file(folder, stem)
        if path is None:
            raise BpxlError(f"{stem}[.gz] is missing from {folder}; {WHERE}")
        arrays.append(read_idx(path, magic, sums.get(stem)))
    images, labels = arrays
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise BpxlError(
            f"MNIST {split} files disagree: images {list(images.shape)}, labels {len(labels)}"
        )
    if len(images) != COUNTS[split]:
        raise BpxlError(f"MNIST {split} has {len(images)} images, expected {COUNTS[split]}")
    if labels.max(initial=0) > 9:
        raise BpxlError(f"MNIST {split} labels go up to {labels.max()}, expected 0..9")
    return images, labels


def normalise(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """Raw uint8 pixels as the float32 the models see, on `device`, shape kept: the one place
    training, testing and picking the workbook's digits all normalise."""
    return torch.from_numpy(images.copy()).to(device).float().div_(255).sub_(MEAN).div_(STD)


def _to_tensors(images: np.ndarray, labels: np.ndarray, device: torch.device):
    x = normalise(images, device)
    return x.unsqueeze(1), torch.from_numpy(labels.astype(np.int64)).to(device)


def download(root: Path) -> Path:
    """torchvision's downloader as the fallback; offline, one line says what to do instead.

    It downloads into a temporary folder and only then moves the four files to `root`, so a
    failed or interrupted download leaves no empty or half-filled `root` behind.
    """
    try:
        from torchvision.datasets import MNIST
    except ImportError as exc:  # pragma: no cover - torchvision is a declared dependency
        raise BpxlError(f"MNIST files not found and torchvision is missing; {WHERE}") from exc
    with tempfile.TemporaryDirectory(prefix="mnist-download-") as tmp:
        try:
            for train in (True, False):
                MNIST(root=tmp, train=train, download=True)
        except Exception as exc:  # network errors come in many types; all mean the same here
            raise BpxlError(
                f"MNIST files not found in {root} and the download failed "
                f"({type(exc).__name__}); {WHERE}"
            ) from exc
        raw = root / "MNIST" / "raw"
        try:
            raw.mkdir(parents=True, exist_ok=True)
            for stem in FILES.values():
                shutil.move(Path(tmp) / "MNIST" / "raw" / f"{stem}.gz", raw / f"{stem}.gz")
        except OSError as exc:
            raise BpxlError(f"cannot put the downloaded MNIST files in {raw}: {exc}") from exc
    return raw


def resolve_dir(data_dir: str | Path | None) -> Path:
    """--data-dir, else $MNIST_DATA, else ./data (downloaded by torchvision when empty)."""
    given = data_dir if data_dir is not None else os.environ.get("MNIST_DATA") or None
    if given is not None:
        folder = Path(given)
        if not folder.is_dir():
            raise BpxlError(f"MNIST folder {folder} does not exist; {WHERE}")
        return folder
    folder = Path("data")
    if all(find_file(folder, stem) for stem in FILES.values()):
        return folder
    return download(folder)


def load(data_dir: str | Path | None, device: torch.device | str = "cpu") -> Mnist:
    """All of MNIST as checked, normalised tensors on `device`."""
    folder = resolve_dir(data_dir)
    sums = read_sums(folder)
    train = _to_tensors(*read_split(folder, "train", sums), torch.device(device))
    test_images, test_labels = read_split(folder, "test", sums)
    test = _to_tensors(test_images, test_labels, torch.device(device))
    pixels = test_images.reshape(len(test_images), -1)
    return Mnist(*train, *test, source=folder, test_pixels=pixels)
