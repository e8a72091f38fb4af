"""Offline bundles for GPU nodes without network: wheels for the NODE's Python and platform, data
and model folders, packed in parts small enough for a capped transfer (see the offline package).

On a machine with internet (`--have`: the node's `python3 -m pip freeze`, to leave out what it has):
    python scripts/bundle.py build --out bundle -r requirements/train.txt --have node-freeze.txt \\
        [--python-version 3.12] [--platform manylinux_2_28_x86_64 ...] [--no-deps] \\
        [--data DIR ...] [--model DIR ...] [--part-size 2G] [--compress none|gzip|xz] [--find-links DIR] [--no-index] [--dry-run]
Copy bundle/ (manifest.json and bundle.tar*.partNNN; wheels/ is the build's cache, not needed) to
the node; there, from the repository root, with no network:
    PYTHONPATH=. python3 scripts/bundle.py install bundle [--python PY] [--dest DIR] [--requirements-only]

Both are idempotent: a second build reuses downloads and parts, a second install changes nothing.
Exit code 2 with `error: ...` when the bundle cannot be built or installed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from offline.build import build
from offline.common import (
    COMPRESSIONS,
    DEFAULT_COMPRESSION,
    DEFAULT_PART_SIZE,
    DEFAULT_PLATFORMS,
    DEFAULT_PYTHON_VERSION,
    BundleError,
    parse_size,
)
from offline.install import install
from training.paths import REPO


def part_size(text: str) -> int:
    """--part-size as bytes; a bad size is a usage error (exit 2)."""
    try:
        return parse_size(text)
    except BundleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The two subcommands, options mirroring offline.build.build and offline.install.install."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="download wheels for the node, pack them with data and models in parts")
    b.add_argument("specs", nargs="*", metavar="REQUIREMENT", help="requirement specs, e.g. axolotl==0.19.0")
    b.add_argument("--out", type=Path, required=True, help="bundle folder (created; re-running reuses it)")
    b.add_argument(
        "-r", "--requirement", action="append", default=[], metavar="FILE", help="requirements file"
    )
    b.add_argument("--python-version", default=DEFAULT_PYTHON_VERSION, help="the node's Python (major.minor)")
    b.add_argument(
        "--platform",
        action="append",
        dest="platforms",
        metavar="TAG",
        help=f"the node's wheel platform tags (repeatable; default: {' '.join(DEFAULT_PLATFORMS)})",
    )
    b.add_argument("--no-deps", action="store_true", help="only the packages named, no dependencies")
    b.add_argument("--have", type=Path, metavar="FREEZE_FILE", help="the node's pip freeze: leave those out")
    b.add_argument(
        "--data", type=Path, action="append", default=[], metavar="DIR", help="-> <dest>/data/<name>"
    )
    b.add_argument(
        "--model",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="-> <dest>/.cache/models/<name>",
    )
    b.add_argument("--part-size", type=part_size, default=DEFAULT_PART_SIZE, help="e.g. 60M, 2G (default 2G)")
    b.add_argument(
        "--compress",
        choices=sorted(COMPRESSIONS),
        default=DEFAULT_COMPRESSION,
        help="compress the archive: gzip helps text data only; xz also shrinks wheels' compiled code (slower build)",
    )
    b.add_argument("--find-links", type=Path, action="append", default=[], metavar="DIR", help="local wheels")
    b.add_argument("--no-index", action="store_true", help="use only --find-links folders (no index)")
    b.add_argument("--dry-run", action="store_true", help="print the pip commands, download nothing")

    i = sub.add_parser("install", help="check the parts, install the wheels, copy data and models (offline)")
    i.add_argument("bundle", type=Path, help="the bundle folder (manifest.json and its parts)")
    i.add_argument("--python", default=sys.executable, help="interpreter to install into (default: this one)")
    i.add_argument(
        "--dest", type=Path, default=REPO, help="where data/ and .cache/models/ go (default: repo)"
    )
    i.add_argument("--requirements-only", action="store_true", help="install the wheels only")
    i.add_argument("--overwrite", action="store_true", help="replace data/model files that differ")
    return parser.parse_args(argv)


def run_build(args: argparse.Namespace) -> dict:
    """build() from the command line: -r files and positional specs in one requirement list."""
    return build(
        args.out,
        [f"-r {path}" for path in args.requirement] + args.specs,
        python_version=args.python_version,
        platforms=args.platforms or list(DEFAULT_PLATFORMS),
        no_deps=args.no_deps,
        have=args.have,
        data=args.data,
        models=args.model,
        part_size=args.part_size,
        find_links=args.find_links,
        no_index=args.no_index,
        compress=args.compress,
        dry_run=args.dry_run,
    )


def report_build(result: dict) -> None:
    """What was built and the command to run on the node (or, with --dry-run, the pip commands)."""
    if result.get("dry_run"):
        print("\n".join(result["commands"]))
        return
    parts = result["parts"]
    print(
        f"{result['out']}: {len(result['wheels'])} wheel(s), {len(result['data'])} data, "
        f"{len(result['models'])} model folder(s); {len(parts)} part(s), largest {max(p['size'] for p in parts)} bytes"
    )
    print(f"copy manifest.json and {parts[0]['file'][:-3]}* to the node, then: {result['install_command']}")


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; a BundleError is one `error:` line and exit code 2."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "build":
            report_build(run_build(args))
        else:
            summary = install(
                args.bundle,
                python=args.python,
                dest=args.dest,
                requirements_only=args.requirements_only,
                overwrite=args.overwrite,
            )
            print(json.dumps(summary, indent=2))
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
