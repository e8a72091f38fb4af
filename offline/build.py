"""Build an offline bundle on a machine with internet: the wheels a node lacks (offline.resolve),
plus data and model folders, streamed into one tar cut into parts of a capped size, with a
manifest written last (sha256 of every wheel, file, part and of the whole archive). A re-run
with the same inputs repacks nothing."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from offline.common import (
    CHUNK,
    COMPRESSIONS,
    DEFAULT_COMPRESSION,
    DEST_DIRS,
    FORMAT,
    MANIFEST,
    BundleError,
    human,
    load_manifest,
    write_json_atomic,
)
from offline.parts import PartWriter, part_problems
from offline.resolve import (
    abi_tag,
    download_command,
    fetch_wheels,
    index_args,
    read_freeze,
    resolve,
    resolve_command,
    split_present,
    target_args,
)

log = logging.getLogger("bundle")
Tree = tuple[str, str, list[tuple[str, Path]]]  # (kind: data|models, name, [(posix relative path, file)])


def tree_files(root: Path) -> list[tuple[str, Path]]:
    """Every file under a folder, symlinks followed (stored as copies), sorted, as (posix path, path)."""
    files, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_file():
                files.append((path.relative_to(root).as_posix(), path))
    return sorted(files)


def collect_trees(data: Iterable[Path], models: Iterable[Path]) -> list[Tree]:
    """(kind, name, files) of each data and model folder; names must be unique per kind."""
    trees, names = [], set()
    for kind, roots in (("data", data), ("models", models)):
        for root in map(Path, roots):
            if not root.is_dir():
                raise BundleError(f"--{'data' if kind == 'data' else 'model'} {root}: not a folder")
            if (kind, root.resolve().name) in names:
                raise BundleError(f"two {kind} folders named {root.resolve().name!r}: rename one")
            names.add((kind, root.resolve().name))
            trees.append((kind, root.resolve().name, tree_files(root)))
    return trees


class _HashingReader:
    """Reads a file through, keeping its sha256: one read both packs and hashes it."""

    def __init__(self, fh: IO[bytes]):
        self.fh, self.sha256 = fh, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        """Read like the file does, hashing what passes."""
        data = self.fh.read(size)
        self.sha256.update(data)
        return data


def add_file(tar: tarfile.TarFile, arcname: str, path: Path) -> dict:
    """Add one regular file with neutral owner and mode; return its size, mtime and sha256."""
    stat = path.stat()
    info = tarfile.TarInfo(arcname)
    info.size, info.mtime = stat.st_size, int(stat.st_mtime)
    info.mode = 0o755 if stat.st_mode & 0o111 else 0o644
    with open(path, "rb") as fh:
        reader = _HashingReader(fh)
        try:
            tar.addfile(info, reader)
        except OSError as exc:
            raise BundleError(f"{path} changed while being packed ({exc}): run build again") from exc
    return {"size": info.size, "mtime": info.mtime, "sha256": reader.sha256.hexdigest()}


def stored_copy(wheel: Path, scratch: Path) -> Path:
    """The wheel re-zipped without compression: the same files and RECORD, so pip installs it alike,
    but bytes xz can shrink (deflated ones pass through it almost unchanged)."""
    copy = scratch / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(copy, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            with src.open(info) as member, dst.open(_stored(info), "w") as target:
                while chunk := member.read(CHUNK):
                    target.write(chunk)
    stat = wheel.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same tar member on every build
    return copy


def _stored(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    """A member's name, time, permissions and size (zip64 above 2 GiB), marked stored."""
    stored = zipfile.ZipInfo(info.filename, info.date_time)
    stored.external_attr, stored.file_size = info.external_attr, info.file_size
    return stored


def add_wheel(tar: tarfile.TarFile, wheel: Path, *, stored: bool) -> None:
    """Add a wheel as wheels/<name>: as downloaded, or (stored) its uncompressed copy."""
    if not stored:
        add_file(tar, f"wheels/{wheel.name}", wheel)
        return
    with tempfile.TemporaryDirectory(dir=wheel.parent, prefix=".stored-") as scratch:
        add_file(tar, f"wheels/{wheel.name}", stored_copy(wheel, Path(scratch)))


def pack(
    out: Path, wheels: list[dict], trees: list[Tree], *, part_size: int, compress: str
) -> tuple[dict, list[dict], list[dict]]:
    """Stream wheels, data and models into one tar split into parts; return archive, parts, tree entries.
    With xz the wheels go in re-zipped without compression, so xz can shrink their compiled code,
    which it cannot once deflated (vLLM's wheel: 304 MB as downloaded, 212 MB this way)."""
    stem, mode = COMPRESSIONS[compress]
    stored = compress == "xz"
    writer = PartWriter(out, stem, part_size)
    entries = []
    try:
        with tarfile.open(fileobj=writer, mode=mode, format=tarfile.PAX_FORMAT) as tar:
            for wheel in wheels:
                add_wheel(tar, out / "wheels" / wheel["file"], stored=stored)
            for kind, name, files in trees:
                records = [
                    {"path": rel, **add_file(tar, f"{kind}/{name}/{rel}", path)} for rel, path in files
                ]
                entries.append(
                    {"kind": kind, "name": name, "size": sum(r["size"] for r in records), "files": records}
                )
        writer.close()
    except BaseException:
        writer.abort()
        raise
    archive = {
        "file": stem,
        "compression": None if compress == "none" else compress,
        "wheels": "re-zipped without compression (same files)" if stored else "as downloaded",
        "size": writer.size,
        "sha256": writer.total.hexdigest(),
    }
    return archive, writer.parts, entries


def fingerprint(meta: dict, trees: list[Tree], part_size: int, compress: str) -> str:
    """A digest of everything that shapes the parts (wheel hashes, file sizes and times), to skip repacking."""
    sources = [
        (kind, name, [(rel, p.stat().st_size, p.stat().st_mtime_ns) for rel, p in files])
        for kind, name, files in trees
    ]
    blob = json.dumps([meta, sources, part_size, compress], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def remove_stale(out: Path, keep: set[str]) -> None:
    """Delete parts of an earlier build and temp files a crash left, so only this build's parts remain."""
    for path in [*out.glob("bundle.tar*.part*"), *out.glob(".bundle.tar*.tmp")]:
        if path.name not in keep:
            path.unlink()


def build(
    out: Path,
    requirements: list[str],
    *,
    python_version: str,
    platforms: list[str],
    no_deps: bool,
    have: Path | None,
    data: list[Path],
    models: list[Path],
    part_size: int,
    find_links: Iterable[Path] = (),
    no_index: bool = False,
    compress: str = DEFAULT_COMPRESSION,
    dry_run: bool = False,
) -> dict:
    """Gather what an offline node lacks (wheels for its Python/platform, data, models) as capped parts."""
    out = Path(out).resolve()
    target = target_args(python_version, platforms)
    index = index_args(out / "wheels", find_links, no_index)
    if part_size < 1:
        raise BundleError(f"part size {part_size} is not positive")
    if dry_run:
        return plan(requirements, out, target, index, no_deps)
    trees = collect_trees(data, models)
    node_has = read_freeze(have) if have else {}
    (out / "wheels").mkdir(parents=True, exist_ok=True)
    wheels, skipped = _gather_wheels(requirements, out / "wheels", target, index, no_deps, node_has)
    meta = {
        "format": FORMAT,
        "target": {
            "python_version": python_version,
            "implementation": "cp",
            "abi": abi_tag(python_version),
            "platforms": list(platforms),
        },
        "requirements": list(requirements),
        "no_deps": no_deps,
        "wheels": wheels,
        "skipped": skipped,
    }
    return _write_bundle(out, meta, trees, part_size=part_size, compress=compress)


def _gather_wheels(
    requirements: list[str],
    wheels_dir: Path,
    target: list[str],
    index: list[str],
    no_deps: bool,
    node_has: dict[str, str],
) -> tuple[list[dict], list[dict]]:
    """Resolve, leave out what the node has, download the rest: the wheels a bundle carries."""
    if not requirements:
        return [], []
    python_version = target[target.index("--python-version") + 1]
    if f"{sys.version_info[0]}.{sys.version_info[1]}" != python_version:
        log.warning(
            "environment markers are judged by this Python %d.%d, not %s: build with Python %s for exact results",
            *sys.version_info[:2],
            python_version,
            python_version,
        )
    items = resolve(requirements, target, index, no_deps, wheels_dir)
    items, skipped = split_present(items, node_has)
    return fetch_wheels(items, wheels_dir, target, index), skipped


def _write_bundle(out: Path, meta: dict, trees: list[Tree], *, part_size: int, compress: str) -> dict:
    """Pack and write the manifest last, unless the same inputs were already packed intact."""
    digest = fingerprint(meta, trees, part_size, compress)
    old = load_manifest(out)
    if old and old.get("fingerprint") == digest and not part_problems(out, old, full=True)[0]:
        log.info("bundle in %s is up to date (%d part(s))", out, len(old["parts"]))
        return dict(old, out=str(out), up_to_date=True)
    (out / MANIFEST).unlink(missing_ok=True)  # a half-written bundle has no manifest
    archive, parts, entries = pack(out, meta["wheels"], trees, part_size=part_size, compress=compress)
    manifest = dict(meta, archive=archive, part_size=part_size, parts=parts, fingerprint=digest)
    for kind in DEST_DIRS:
        manifest[kind] = [{k: e[k] for k in ("name", "size", "files")} for e in entries if e["kind"] == kind]
    manifest["install_command"] = f"PYTHONPATH=. python3 scripts/bundle.py install {out.name}"
    manifest["install_note"] = (
        f"run on the node from the repository root, with this folder copied there as {out.name}/"
    )
    remove_stale(out, {p["file"] for p in parts})
    write_json_atomic(out / MANIFEST, manifest)
    log.info(
        "bundle: %s in %d part(s) of at most %s in %s",
        human(archive["size"]),
        len(parts),
        human(part_size),
        out,
    )
    return dict(manifest, out=str(out), up_to_date=False)


def plan(requirements: list[str], out: Path, target: list[str], index: list[str], no_deps: bool) -> dict:
    """The pip commands a build would run, without running them (`--dry-run`)."""
    resolve_cmd = resolve_command(requirements, target, index, no_deps, "<scratch dir>")
    download_cmd = download_command(
        ["<each resolved wheel URL>#sha256=<its hash>"], out / "wheels", target, index
    )
    return {"dry_run": True, "out": str(out), "commands": [shlex.join(resolve_cmd), shlex.join(download_cmd)]}
