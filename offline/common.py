"""What the two halves of an offline bundle share: its format, one-line errors, sizes, hashes,
atomic writes and safe paths. Stdlib only: a node may have nothing but Python and pip."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import IO, Any

FORMAT = 1
MANIFEST = "manifest.json"
DEFAULT_PYTHON_VERSION = "3.12"
DEFAULT_PLATFORMS = ("manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64")
DEFAULT_PART_SIZE = "2G"
# --compress -> (archive name, tarfile write mode); install reads any of them ("r|*").
COMPRESSIONS = {
    "none": ("bundle.tar", "w|"),
    "gzip": ("bundle.tar.gz", "w|gz"),
    "xz": ("bundle.tar.xz", "w|xz"),
}
DEFAULT_COMPRESSION = "none"
DEST_DIRS = {"data": PurePosixPath("data"), "models": PurePosixPath(".cache/models")}
CHUNK = 1 << 20
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class BundleError(ValueError):
    """A bundle cannot be built or installed; the one-line message names the file and what to do."""


def parse_size(text: str) -> int:
    """Bytes from `500k`, `60M`, `2G`, `1.5GiB` or `4096` (binary units), for part sizes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise BundleError(f"size {text!r} not understood: use a number with k, M, G or T (e.g. 60M, 2G)")
    size = int(float(match[1]) * _UNITS[match[2].lower()])
    if size < 1:
        raise BundleError(f"size {text!r} is zero: give at least one byte")
    return size


def normalize(name: str) -> str:
    """PEP 503 project name, so `PyYAML`, `pyyaml` and `py_yaml` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (parts and models can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def human(size: int) -> str:
    """A byte count for people (log lines)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON through a temp file + os.replace: a crash leaves the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def copy_atomic(src: IO[bytes], path: Path, *, mode: int = 0o644, mtime: int | None = None) -> None:
    """Stream a file object to path through a temp file in the same folder + os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            shutil.copyfileobj(src, fh, CHUNK)
        os.chmod(tmp, mode)
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def safe_relpath(name: str) -> PurePosixPath:
    """A relative path with no `..` or root, so nothing from a bundle lands outside its folder."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or "\\" in name or ".." in path.parts or ":" in path.parts[0]:
        raise BundleError(f"unsafe path {name!r} in the bundle (absolute or with '..'): refusing it; rebuild")
    return path


def load_manifest(bundle_dir: Path) -> dict | None:
    """The manifest of a previous build in this folder, or None."""
    try:
        return json.loads((bundle_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def pip(python: str, *args: str) -> list[str]:
    """The command line running pip of a given interpreter."""
    return [python, "-m", "pip", *args]
