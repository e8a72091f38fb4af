"""Offline bundles for GPU nodes without network: the wheels a node lacks (built for ITS Python
and platform), plus data and model folders, in one tar cut into parts of a capped size.

    python scripts/bundle.py build --out bundle -r requirements/train.txt --have node-freeze.txt
    PYTHONPATH=. python3 scripts/bundle.py install bundle        # on the node, from the repo root

``build`` resolves the requirements for the target (``pip install --dry-run --report`` with
``--python-version/--platform``: metadata only, so wheels the node already has, per its
``pip freeze``, are never downloaded), downloads the rest with ``pip download``, builds
pure-Python wheels for packages published only as source, and writes ``bundle.tar.partNNN``
plus ``manifest.json`` (sha256 of every wheel, file, part and of the whole archive).
``install`` checks the parts, extracts safely, installs exactly the bundle's wheels with
``pip --no-index`` and copies data to ``<dest>/data/<name>``, models to
``<dest>/.cache/models/<name>``. Both are idempotent. Stdlib only: a node may have nothing
but Python and pip.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from training.paths import REPO

log = logging.getLogger("bundle")

FORMAT = 1
MANIFEST = "manifest.json"
DEFAULT_PYTHON_VERSION = "3.12"
DEFAULT_PLATFORMS = ("manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64")
DEFAULT_PART_SIZE = "2G"
DEST_DIRS = {"data": PurePosixPath("data"), "models": PurePosixPath(".cache/models")}
CHUNK = 1 << 20
Tree = tuple[str, str, list[tuple[str, Path]]]  # (kind: data|models, name, [(posix relative path, file)])
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# What the target interpreter reports about itself: its version and installed distributions.
_TARGET_STATE = (
    "import importlib.metadata as m, json, sys; print(json.dumps({'python': '%d.%d' % sys.version_info[:2],"
    " 'dists': [[d.metadata['Name'], d.version] for d in m.distributions()]}))"
)


class BundleError(ValueError):
    """A bundle cannot be built or installed; the one-line message names the file and what to do."""


# --- small helpers -------------------------------------------------------------------------


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


def read_freeze(path: Path) -> dict[str, str]:
    """Normalized name -> version of what the node has, from its `pip freeze` output."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(
            f"{path} not found: on the node run `python3 -m pip freeze > {path.name}`, copy it here"
        )
    have = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*===?\s*([^\s;#]+)", line)
        if match:
            have[normalize(match[1])] = match[2]
    return have


# --- pip command lines ---------------------------------------------------------------------


def abi_tag(python_version: str) -> str:
    """The CPython ABI tag of a version: 3.12 -> cp312."""
    if not re.fullmatch(r"3\.\d+", python_version):
        raise BundleError(f"--python-version {python_version!r} not understood: give major.minor, e.g. 3.12")
    return "cp" + python_version.replace(".", "")


def target_args(python_version: str, platforms: Iterable[str]) -> list[str]:
    """pip options choosing wheels for the node's Python and platform instead of this machine's."""
    args = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
    args += ["--abi", abi_tag(python_version)]
    for platform in platforms:
        args += ["--platform", platform]
    return args


def index_args(wheels_dir: Path, find_links: Iterable[Path], no_index: bool) -> list[str]:
    """pip options for where packages come from; wheels/ first, so earlier work is reused."""
    args = ["--find-links", str(wheels_dir)]
    for link in find_links:
        args += ["--find-links", str(Path(link).resolve())]
    return args + (["--no-index"] if no_index else [])


def requirement_args(requirements: Iterable[str]) -> list[str]:
    """pip arguments for specs: `name==1.0`, `-r FILE` or `-c FILE` (files made absolute)."""
    args = []
    for spec in requirements:
        flag, _, rest = spec.strip().partition(" ")
        if flag in ("-r", "--requirement", "-c", "--constraint") and rest.strip():
            path = Path(rest.strip()).expanduser()
            if not path.is_file():
                raise BundleError(f"requirements file {path} not found")
            args += [flag, str(path.resolve())]
        elif spec.strip().startswith("-"):
            raise BundleError(f"requirement {spec!r} not understood: give name==version, -r FILE or -c FILE")
        elif spec.strip():
            args.append(spec.strip())
    return args


def pip(python: str, *args: str) -> list[str]:
    """The command line running pip of a given interpreter."""
    return [python, "-m", "pip", *args]


def resolve_command(
    requirements: list[str], target: list[str], index: list[str], no_deps: bool, scratch: str
) -> list[str]:
    """The metadata-only resolution of the requirements for the target (`--target` is never written)."""
    options = ["install", "--dry-run", "--quiet", "--report", "-", "--ignore-installed", "--target", scratch]
    return pip(
        sys.executable,
        *options,
        *target,
        *index,
        *(["--no-deps"] if no_deps else []),
        *requirement_args(requirements),
    )


def download_command(urls: list[str], dest: Path, target: list[str], index: list[str]) -> list[str]:
    """The download of exactly the resolved files (URL + sha256), nothing re-resolved."""
    return pip(sys.executable, "download", "--no-deps", *target, *index, "-d", str(dest), *urls)


# --- build: resolve, download, pack --------------------------------------------------------


def missing_wheel_spec(stderr: str) -> str | None:
    """The requirement pip found no wheel for (`No matching distribution found for X`), if that failed."""
    match = re.search(r"No matching distribution found for (\S.*?)\s*$", stderr, re.MULTILINE)
    return match[1] if match else None


def is_pure_wheel(filename: str) -> bool:
    """Whether a wheel runs on any platform (py*-none-any), i.e. a locally built one suits the node."""
    python_tag, abi, platform = filename[: -len(".whl")].split("-")[-3:]
    return abi == "none" and platform == "any" and all(t.startswith("py") for t in python_tag.split("."))


def build_from_sdist(spec: str, wheels_dir: Path, python_version: str, index: list[str]) -> Path:
    """Turn a source-only package into a wheel here; only a pure-Python result suits the node."""
    name = normalize(re.match(r"[A-Za-z0-9._-]+", spec)[0])
    advice = f"build its wheel on a machine like the node (Python {python_version}) and pass that folder with --find-links"
    with tempfile.TemporaryDirectory(dir=wheels_dir, prefix=".sdist-") as tmp:
        get = pip(
            sys.executable, "download", "--no-deps", "--no-binary", name, "--python-version", python_version
        )
        if subprocess.run([*get, *index, "-d", f"{tmp}/src", spec]).returncode:
            raise BundleError(
                f"{spec}: no wheel for Python {python_version} on the platforms asked, and no source archive either: check the name, version and --platform"
            )
        sdist = next(Path(tmp, "src").iterdir())
        isolation = ["--no-build-isolation"] if "--no-index" in index else []
        wheel_cmd = pip(
            sys.executable, "wheel", "--no-deps", *isolation, *index, "-w", f"{tmp}/out", str(sdist)
        )
        if subprocess.run(wheel_cmd).returncode:
            raise BundleError(
                f"{spec} is published only as source and building it failed (it probably needs compiling): {advice}"
            )
        wheel = next(Path(tmp, "out").glob("*.whl"))
        if not is_pure_wheel(wheel.name):
            raise BundleError(
                f"{spec} is published only as source and needs compiling ({wheel.name} suits this machine, not the node): {advice}"
            )
        os.replace(wheel, wheels_dir / wheel.name)
    log.info("built %s from source (pure Python)", wheel.name)
    return wheels_dir / wheel.name


def report_items(report: str) -> list[dict]:
    """Name, version, file name, URL and sha256 of each wheel in pip's installation report."""
    items = []
    for entry in json.loads(report)["install"]:
        url = entry["download_info"]["url"]
        file = unquote(urlsplit(url).path).rsplit("/", 1)[-1]
        meta = entry["metadata"]
        if not file.endswith(".whl"):
            raise BundleError(f"{meta['name']} resolves to {url}, not a wheel: give name==version or a wheel")
        archive = entry["download_info"].get("archive_info", {})
        sha = (
            archive.get("hashes", {}).get("sha256") or archive.get("hash", "").partition("sha256=")[2] or None
        )
        items.append(
            {"name": meta["name"], "version": meta["version"], "file": file, "url": url, "sha256": sha}
        )
    return items


def resolve(
    requirements: list[str], target: list[str], index: list[str], no_deps: bool, wheels_dir: Path
) -> list[dict]:
    """Pin every wheel the node needs, building pure-Python wheels for source-only packages on the way."""
    built: set[str] = set()
    python_version = target[target.index("--python-version") + 1]
    while True:
        with tempfile.TemporaryDirectory() as scratch:
            proc = subprocess.run(
                resolve_command(requirements, target, index, no_deps, scratch), capture_output=True, text=True
            )
        if proc.returncode == 0:
            return report_items(proc.stdout)
        spec = missing_wheel_spec(proc.stderr)
        if spec is None or spec in built:
            sys.stderr.write(proc.stderr)
            raise BundleError(
                f"pip could not resolve the requirements for Python {python_version}: see pip's message above"
            )
        log.info("%s has no wheel for the node: trying its source", spec)
        built.add(spec)
        build_from_sdist(spec, wheels_dir, python_version, index)


def split_present(items: list[dict], have: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """Leave out wheels the node already has at the same version (from its pip freeze)."""
    keep, skipped = [], []
    for item in items:
        node_version = have.get(normalize(item["name"]))
        if node_version is not None and node_version.lower() == item["version"].lower():
            skipped.append({"name": item["name"], "version": item["version"]})
            continue
        if node_version is not None:
            log.info(
                "%s: the node has %s, the bundle carries %s", item["name"], node_version, item["version"]
            )
        keep.append(item)
    if skipped:
        names = ", ".join(f"{s['name']}=={s['version']}" for s in skipped)
        log.info("skipped %d wheel(s) already on the node: %s", len(skipped), names)
    return keep, skipped


def fetch_wheels(items: list[dict], wheels_dir: Path, target: list[str], index: list[str]) -> list[dict]:
    """Download the resolved wheels missing from wheels/ (a re-run downloads nothing twice)."""
    todo = [item for item in items if not _wheel_present(wheels_dir / item["file"], item["sha256"])]
    log.info("wheels: %d to download, %d already in %s", len(todo), len(items) - len(todo), wheels_dir)
    if todo:
        with tempfile.TemporaryDirectory(dir=wheels_dir, prefix=".incoming-") as tmp:
            urls = [item["url"] + (f"#sha256={item['sha256']}" if item["sha256"] else "") for item in todo]
            if subprocess.run(download_command(urls, Path(tmp), target, index)).returncode:
                raise BundleError(
                    "pip download failed: see pip's message above (network, or a wheel missing)"
                )
            for item in todo:
                os.replace(Path(tmp, item["file"]), wheels_dir / item["file"])
    return [_wheel_entry(wheels_dir / item["file"], item) for item in items]


def _wheel_present(path: Path, sha256: str | None) -> bool:
    """Whether wheels/ already holds this exact file (so it is not downloaded again)."""
    return path.is_file() and (sha256 is None or sha256_file(path) == sha256)


def _wheel_entry(path: Path, item: dict) -> dict:
    """The manifest record of one wheel, hashed from the file actually on disk."""
    return {
        "name": item["name"],
        "version": item["version"],
        "file": path.name,
        "sha256": sha256_file(path),
        "size": path.stat().st_size,
    }


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


def pack(
    out: Path, wheels: list[dict], trees: list[Tree], *, part_size: int, compress: bool
) -> tuple[dict, list[dict], list[dict]]:
    """Stream wheels, data and models into one tar split into parts; return archive, parts, tree entries."""
    stem = "bundle.tar.gz" if compress else "bundle.tar"
    writer = PartWriter(out, stem, part_size)
    entries = []
    try:
        with tarfile.open(
            fileobj=writer, mode="w|gz" if compress else "w|", format=tarfile.PAX_FORMAT
        ) as tar:
            for wheel in wheels:
                add_file(tar, f"wheels/{wheel['file']}", out / "wheels" / wheel["file"])
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
        "compression": "gzip" if compress else None,
        "size": writer.size,
        "sha256": writer.total.hexdigest(),
    }
    return archive, writer.parts, entries


def fingerprint(meta: dict, trees: list[Tree], part_size: int, compress: bool) -> str:
    """A digest of everything that shapes the parts (wheel hashes, file sizes and times), to skip repacking."""
    sources = [
        (kind, name, [(rel, p.stat().st_size, p.stat().st_mtime_ns) for rel, p in files])
        for kind, name, files in trees
    ]
    blob = json.dumps([meta, sources, part_size, compress], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def load_manifest(bundle_dir: Path) -> dict | None:
    """The manifest of a previous build in this folder, or None."""
    try:
        return json.loads((bundle_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


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
    compress: bool = False,
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


def _write_bundle(out: Path, meta: dict, trees: list[Tree], *, part_size: int, compress: bool) -> dict:
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


# --- install: check, extract, pip install, copy ---------------------------------------------


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
    dest: Path = REPO,
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
