"""Which wheels a node lacks, for ITS Python and platform: pip resolves metadata only
(``install --dry-run --report`` with ``--python-version/--platform``), the node's ``pip freeze``
is left out, the rest is downloaded by exact URL and hash, and packages published only as
source are built into pure-Python wheels here."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from offline.common import BundleError, normalize, pip, sha256_file

log = logging.getLogger("bundle")


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
