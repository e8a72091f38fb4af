"""A bundle's archive as numbered parts of a capped size: written as one stream, checked
(size, sha256, and the whole archive's sha256) and read back as one stream."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from offline.common import CHUNK, MANIFEST, BundleError


class PartWriter:
    """A write-only stream cut into `<stem>.partNNN` files of at most part_size bytes, hashed on the way."""

    def __init__(self, out: Path, stem: str, part_size: int):
        self.out, self.stem, self.part_size = out, stem, part_size
        self.parts: list[dict] = []
        self.total = hashlib.sha256()
        self.size = 0
        self._fh = self._tmp = self._hash = None
        self._filled = 0

    def write(self, data: bytes) -> int:
        """Append bytes, starting a new part whenever the current one is full."""
        view = memoryview(data).cast("B")
        while len(view):
            if self._fh is None or self._filled == self.part_size:
                self._next_part()
            chunk = view[: self.part_size - self._filled]
            self._fh.write(chunk)
            self._hash.update(chunk)
            self.total.update(chunk)
            self._filled += len(chunk)
            self.size += len(chunk)
            view = view[len(chunk) :]
        return len(data)

    def _next_part(self) -> None:
        """Finish the current part and open the next one as a temp file."""
        self.close()
        name = f"{self.stem}.part{len(self.parts) + 1:03d}"
        fd, self._tmp = tempfile.mkstemp(dir=self.out, prefix=f".{name}.", suffix=".tmp")
        self._fh, self._hash, self._filled = os.fdopen(fd, "wb"), hashlib.sha256(), 0
        self.parts.append({"file": name})

    def close(self) -> None:
        """Finish the current part: rename its temp file into place (atomic), record size and hash."""
        if self._fh is None:
            return
        self._fh.close()
        os.replace(self._tmp, self.out / self.parts[-1]["file"])
        self.parts[-1].update(size=self._filled, sha256=self._hash.hexdigest())
        self._fh = None

    def abort(self) -> None:
        """Drop the unfinished part's temp file after an error."""
        if self._fh is not None:
            self._fh.close()
            Path(self._tmp).unlink(missing_ok=True)
            self._fh = None


def part_problems(bundle_dir: Path, manifest: dict, *, full: bool) -> tuple[list[str], str | None]:
    """Missing, truncated or (full) corrupt parts, and the sha256 of the whole archive when all are read."""
    problems, total = [], hashlib.sha256()
    for part in manifest["parts"]:
        path = bundle_dir / part["file"]
        if not path.is_file():
            problems.append(f"{part['file']} (missing)")
        elif path.stat().st_size != part["size"]:
            problems.append(f"{part['file']} (size {path.stat().st_size}, expected {part['size']})")
        elif full and _hash_into(path, total) != part["sha256"]:
            problems.append(f"{part['file']} (corrupt: sha256 mismatch)")
    return problems, total.hexdigest() if full and not problems else None


def _hash_into(path: Path, total: Any) -> str:
    """sha256 of one part, feeding the whole-archive digest on the same read."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            total.update(chunk)
    return digest.hexdigest()


def check_parts(bundle_dir: Path, manifest: dict, *, full: bool) -> None:
    """Raise one line naming every missing or corrupt part and what to re-copy; full also checks sha256."""
    problems, total = part_problems(bundle_dir, manifest, full=full)
    if problems:
        them = "it" if len(problems) == 1 else "them"
        raise BundleError(
            f"{bundle_dir}: {', '.join(problems)}: re-copy {them} from the build machine's bundle folder"
        )
    if full and total != manifest["archive"]["sha256"]:
        raise BundleError(
            f"{bundle_dir}: the joined parts do not match the archive sha256 in {MANIFEST}: re-copy {MANIFEST} and the parts"
        )


class JoinedReader:
    """The parts read back to back as one stream (never the whole archive in memory)."""

    def __init__(self, paths: list[Path]):
        self._paths = iter(paths)
        self._fh = None

    def read(self, size: int = -1) -> bytes:
        """Up to size bytes from the current part, moving to the next one at its end."""
        while True:
            if self._fh is None:
                path = next(self._paths, None)
                if path is None:
                    return b""
                self._fh = open(path, "rb")  # noqa: SIM115 (closed when read out, or by close())
            data = self._fh.read(size)
            if data:
                return data
            self._fh.close()
            self._fh = None

    def close(self) -> None:
        """Close the part being read, if any."""
        if self._fh is not None:
            self._fh.close()
