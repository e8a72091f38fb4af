"""A starting engine is never silent: the heartbeat says it is still starting every few
seconds and how long the start took (eval/backends/__init__.py)."""

import logging
import time

import pytest

from eval.backends import heartbeat
from eval.pipeline import keep_log_visible


@pytest.fixture
def caplog(caplog):
    """caplog on the evaluation's logger, which stops propagating once an evaluation has run."""
    keep_log_visible()
    logger = logging.getLogger("evaluate")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_a_slow_start_says_it_is_still_starting_and_how_long_it_took(caplog):
    with caplog.at_level(logging.INFO, logger="evaluate"), heartbeat("engine", every=0.05):
        time.sleep(0.28)
    beats = [r.message for r in caplog.records if "still starting" in r.message]
    assert 3 <= len(beats) <= 6
    assert caplog.records[-1].message.startswith("engine: started in 0.")


def test_a_quick_start_only_says_it_started(caplog):
    with caplog.at_level(logging.INFO, logger="evaluate"), heartbeat("engine", every=5):
        pass
    assert [r.message for r in caplog.records] == ["engine: started in 0.0 s"]
