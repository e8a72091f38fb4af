"""Install a bundle on a node without network, from the repository root: check the parts,
extract safely, install exactly the bundle's wheels with ``pip --no-index`` and copy data to
``<dest>/data/<name>``, models to ``<dest>/.cache/models/<name>``. Idempotent: a second
install changes nothing."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from offline.common import (
    DEST_DIRS,
    FORMAT,
    MANIFEST,
    BundleError,
    copy_atomic,
    load_manifest,
    normalize,
    pip,
    safe_relpath,
    sha256_file,
)
from offline.parts import JoinedReader, check_parts

log = logging.getLogger("bundle")
# What the target interpreter reports about itself: its version and installed distributions.
_TARGET_STATE = (
    "import importlib.metadata as m, json, sys; print(json.dumps({'python': '%d.%d' % sys.version_info[:2],"
    " 'dists': [[d.metadata['Name'], d.version] for d in m.distributions()]}))"
)


def read_manifest(bundle_dir: Path) -> dict:
    """The bundle's manifest, checked enough that install can trust its shape and paths."""
    path = bundle_dir / MANIFEST
    if not path.is_file():
        raise BundleError(
            f"{path} not found: copy manifest.json with the parts (a build that did not finish writes none)"
        )
    manifest = load_manifest(bundle_dir)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not manifest.get("parts"):
        raise BundleError(
            f"{path} is not a bundle manifest of format {FORMAT}: re-copy it, or rebuild with this scripts/bundle.py"
        )
    for part in manifest["parts"]:
        if len(safe_relpath(part["file"]).parts) != 1:
            raise BundleError(f"{path}: part name {part['file']!r} is not a plain file name: rebuild")
    members(manifest)  # validates every path
    return manifest


def members(manifest: dict) -> dict[str, dict]:
    """Archive member -> what it is (wheel, or data/model file with its destination), every path checked."""
    found = {
        f"wheels/{safe_relpath(w['file'])}": {"kind": "wheels", "file": w} for w in manifest.get("wheels", [])
    }
    for kind, base in DEST_DIRS.items():
        for entry in manifest.get(kind, []):
            if len(safe_relpath(entry["name"]).parts) != 1:
                raise BundleError(f"unsafe {kind} name {entry['name']!r} in the manifest: rebuild")
            for record in entry["files"]:
                rel = safe_relpath(record["path"])
                found[f"{kind}/{entry['name']}/{rel}"] = {
                    "kind": kind,
                    "file": record,
                    "dest": base / entry["name"] / rel,
                }
    return found


def target_state(python: str) -> dict:
    """The target interpreter's Python version and {normalized name: version} of what it has installed."""
    try:
        proc = subprocess.run([python, "-c", _TARGET_STATE], capture_output=True, text=True)
    except OSError as exc:
        raise BundleError(f"cannot run {python} ({exc}): pass --python with the node's interpreter") from exc
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise BundleError(
            f"{python} failed to list its packages ({last}): pass --python with a working interpreter"
        )
    state = json.loads(proc.stdout)
    return {"python": state["python"], "dists": {normalize(n): v for n, v in state["dists"] if n}}


def wheels_to_install(manifest: dict, python: str) -> tuple[list[dict], list[dict]]:
    """Split the bundle's wheels into those to install and those already installed at that version."""
    wheels = manifest.get("wheels", [])
    if not wheels:
        return [], []
    state, wanted = target_state(python), manifest["target"]["python_version"]
    if state["python"] != wanted:
        raise BundleError(
            f"the bundle's wheels are for Python {wanted} but {python} is {state['python']}: pass --python with a {wanted} interpreter, or rebuild with --python-version {state['python']}"
        )
    todo = [w for w in wheels if state["dists"].get(normalize(w["name"])) != w["version"]]
    return todo, [w for w in wheels if w not in todo]


def file_matches(path: Path, record: dict) -> bool | None:
    """None when path is missing; else whether it holds the bundle's file (size+mtime, else sha256)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    if stat.st_size != record["size"]:
        return False
    return int(stat.st_mtime) == record["mtime"] or sha256_file(path) == record["sha256"]


def files_to_write(manifest: dict, dest: Path, overwrite: bool) -> dict[str, Path]:
    """Member -> destination of each data/model file missing or different there (different: only with overwrite)."""
    todo, conflicts = {}, []
    for name, member in members(manifest).items():
        if member["kind"] == "wheels":
            continue
        target = dest / member["dest"]
        same = file_matches(target, member["file"])
        if same is False and not overwrite:
            conflicts.append(str(target))
        elif not same:
            todo[name] = target
    if conflicts:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise BundleError(
            f"{conflicts[0]}{more} differs from the bundle's copy: move it away or pass --overwrite"
        )
    return todo


def extract(bundle_dir: Path, manifest: dict, wanted: dict[str, Path]) -> None:
    """Stream the joined parts through tar, writing only the wanted members, each atomically."""
    expected = members(manifest)
    reader = JoinedReader([bundle_dir / part["file"] for part in manifest["parts"]])
    try:
        with tarfile.open(fileobj=reader, mode="r|*") as tar:
            for member in tar:
                safe_relpath(member.name)
                if member.name not in expected or not member.isfile():
                    raise BundleError(
                        f"unexpected member {member.name!r} in the bundle (not in {MANIFEST}): rebuild it"
                    )
                if member.name in wanted:
                    copy_atomic(
                        tar.extractfile(member),
                        wanted.pop(member.name),
                        mode=(member.mode & 0o777) | 0o600,
                        mtime=member.mtime,
                    )
    finally:
        reader.close()
    if wanted:
        raise BundleError(f"the archive lacks {next(iter(wanted))} listed in {MANIFEST}: rebuild the bundle")


def pip_install(python: str, wheel_dir: Path, wheels: list[dict], no_deps: bool) -> None:
    """Install exactly the given wheel files, offline (the bundle's wheels folder is the only source)."""
    files = [str(wheel_dir / w["file"]) for w in wheels]
    command = pip(
        python,
        "install",
        "--no-index",
        "--find-links",
        str(wheel_dir),
        *(["--no-deps"] if no_deps else []),
        *files,
    )
    log.info("installing %d wheel(s) into %s", len(files), python)
    if subprocess.run(command).returncode:
        raise BundleError(f"pip install of the bundle's wheels into {python} failed: see pip's message above")


def install(
    bundle_dir: Path,
    *,
    python: str = sys.executable,
    dest: Path,
    requirements_only: bool = False,
    overwrite: bool = False,
) -> dict:
    """Install a bundle on a node without network: check parts, install its wheels, copy data and models."""
    bundle_dir, dest = Path(bundle_dir).resolve(), Path(dest).resolve()
    manifest = read_manifest(bundle_dir)
    check_parts(bundle_dir, manifest, full=False)
    wheels, present = wheels_to_install(manifest, python)
    files = {} if requirements_only else files_to_write(manifest, dest, overwrite)
    summary = _summary(bundle_dir, manifest, python, dest, wheels, present, files, requirements_only)
    if not wheels and not files:
        log.info("%s is already installed: nothing to do", bundle_dir)
        return summary
    check_parts(bundle_dir, manifest, full=True)
    with tempfile.TemporaryDirectory(dir=_scratch_parent(bundle_dir), prefix=".install-") as tmp:
        wanted = {f"wheels/{w['file']}": Path(tmp, "wheels", w["file"]) for w in wheels}
        extract(bundle_dir, manifest, {**wanted, **files})
        if wheels:
            pip_install(python, Path(tmp, "wheels"), wheels, manifest.get("no_deps", False))
    log.info("installed %s: %d wheel(s), %d file(s) written", bundle_dir, len(wheels), len(files))
    return summary


def _scratch_parent(bundle_dir: Path) -> Path | None:
    """Extract next to the parts (same disk, room for them) unless that folder is read-only."""
    return bundle_dir if os.access(bundle_dir, os.W_OK) else None


def _summary(
    bundle_dir: Path,
    manifest: dict,
    python: str,
    dest: Path,
    wheels: list[dict],
    present: list[dict],
    files: dict[str, Path],
    requirements_only: bool,
) -> dict:
    """What install did (or found already done), for the caller and the CLI's output."""

    def spec(w: dict) -> str:
        return f"{w['name']}=={w['version']}"

    def where(kind: str) -> list[str]:
        return (
            []
            if requirements_only
            else [str(dest / DEST_DIRS[kind] / e["name"]) for e in manifest.get(kind, [])]
        )

    copied = 0 if requirements_only else sum(len(e["files"]) for k in DEST_DIRS for e in manifest.get(k, []))
    return {
        "bundle": str(bundle_dir),
        "python": python,
        "dest": str(dest),
        "wheels_installed": [spec(w) for w in wheels],
        "wheels_already_installed": [spec(w) for w in present],
        "files_written": len(files),
        "files_unchanged": copied - len(files),
        "data": where("data"),
        "models": where("models"),
        "changed": bool(wheels or files),
    }
