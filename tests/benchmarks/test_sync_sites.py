"""The sync-site count: every synchronizing CUDA call warns under sync debug mode, and the
count names the code that made it. A CPU has no such calls, so the warning is raised by hand,
as torch raises it into Python."""

import warnings

import pytest

from benchmarks.sync_sites import SYNC_WARNING, counting_sync_sites, markdown


def reads_a_scalar():
    warnings.warn(
        SYNC_WARNING, UserWarning, stacklevel=1
    )  # what `.item()` on a CUDA tensor raises in warn mode


def one_layer():
    for _ in range(2):  # one site, reached twice
        reads_a_scalar()


def test_syncs_are_counted_by_the_code_that_made_them_and_other_warnings_still_show():
    before = warnings.showwarning
    with pytest.warns(UserWarning, match="something else") as shown, counting_sync_sites(cuda=False) as sites:
        one_layer()
        reads_a_scalar()
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert [str(w.message) for w in shown] == ["something else"]  # the syncs were counted, not shown
    assert warnings.showwarning is before
    assert sorted(sites.values()) == [1, 2]
    site, count = sites.most_common(1)[0]
    assert count == 2
    assert site.startswith(f"{__file__}:{reads_a_scalar.__code__.co_firstlineno + 1} reads_a_scalar <- ")
    assert " one_layer <- " in site and "test_syncs_are_counted" in site  # the two callers above it
    table = markdown(sites)
    assert table.startswith("3 synchronizing calls in the step, at 2 call sites")
    assert f"| 2 | 66.7% | `{site}` |" in table
