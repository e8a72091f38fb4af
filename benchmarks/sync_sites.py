"""Where a training step stops for the GPU. The step profile counts the synchronizing calls
(`.item()`, `nonzero`, copies to the host) but not who made them; under
``torch.cuda.set_sync_debug_mode("warn")`` each one warns, and this counts the warnings by the
Python code that made the call, so a step's syncs can be traced to a library's line."""

from __future__ import annotations

import traceback
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

SYNC_WARNING = "called a synchronizing CUDA operation"  # c10::cuda::warn_or_error_on_sync
DEPTH = 3  # frames named per site: the call, and the two callers above it
# frames that only relay the call: torch's own Python and the warnings machinery (and this module)
RELAYS = ("/torch/", "/warnings.py")


def short(path: str) -> str:
    """A frame's file as a reader finds it: from the package, not the machine's prefix."""
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def call_site(frames: list[traceback.FrameSummary], depth: int = DEPTH) -> str:
    """The innermost ``depth`` frames that are not relays, innermost first."""
    own = [f for f in frames if f.filename != __file__ and not any(relay in f.filename for relay in RELAYS)]
    return " <- ".join(f"{short(f.filename)}:{f.lineno} {f.name}" for f in reversed(own[-depth:]))


@contextmanager
def counting_sync_sites(cuda: bool) -> Iterator[Counter[str]]:
    """Count the block's synchronizing CUDA calls by call site; other warnings show as usual.
    Without CUDA nothing synchronizes and the count stays empty."""
    sites: Counter[str] = Counter()
    with warnings.catch_warnings():  # restores the filters and showwarning on leaving
        warnings.simplefilter("always")
        shown = warnings.showwarning

        def record(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            if SYNC_WARNING in str(message):
                sites[call_site(traceback.extract_stack()[:-1])] += 1
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = record
        if cuda:
            import torch

            torch.cuda.set_sync_debug_mode("warn")
        try:
            yield sites
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")


def markdown(sites: Counter[str], top: int = 25) -> str:
    total = sum(sites.values())
    lines = [
        f"{total} synchronizing calls in the step, at {len(sites)} call sites (innermost first):",
        "",
        "| calls | share | call site |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {n} | {n / total:.1%} | `{site}` |" for site, n in sites.most_common(top)]
    return "\n".join(lines)
