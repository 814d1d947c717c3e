"""A backtest run as a program pauses the cyclic garbage collector while it imports its modules, and turns it
back on (with the imported objects frozen) before the backtest runs; a collector its caller turned off stays off."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from core import cli


@pytest.fixture
def collector() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.unfreeze()
    yield
    gc.unfreeze()
    cli._GC_PAUSED.clear()
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


def test_the_paused_collector_is_on_again_with_the_start_up_objects_frozen(collector: None) -> None:
    gc.enable()
    cli._pause_gc()
    assert not gc.isenabled()
    cli._resume_gc()
    assert gc.isenabled() and gc.get_freeze_count() > 0


def test_a_collector_the_caller_turned_off_is_left_off(collector: None) -> None:
    gc.disable()
    cli._pause_gc()
    cli._resume_gc()
    assert not gc.isenabled() and gc.get_freeze_count() == 0
