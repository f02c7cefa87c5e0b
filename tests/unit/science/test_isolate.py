"""Work in forked children: results in order, at most so many at once, failures named."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from dsa110d.errors import InputFileError, StageError
from dsa110d.science.isolate import run_forked, run_forked_each

STAY_SEC = 0.5
"""How long each child stays, so that the children started together overlap."""


def test_results_come_in_order_from_at_most_so_many_children(tmp_path: Path) -> None:
    def work(item: int) -> dict[str, Any]:
        (tmp_path / str(item)).touch()
        time.sleep(STAY_SEC)
        together = len(list(tmp_path.iterdir()))
        (tmp_path / str(item)).unlink()
        return {"item": item, "pid": os.getpid(), "together": together}

    results = run_forked_each(list(range(6)), work, processes=3, failure=StageError)
    assert [r["item"] for r in results] == list(range(6))
    assert os.getpid() not in {r["pid"] for r in results}
    assert 2 <= max(r["together"] for r in results) <= 3


def test_failures_name_the_item_and_keep_known_classes() -> None:
    def work(item: str) -> dict[str, Any]:
        if item == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if item == "bad input":
            raise InputFileError("bad input: unreadable")
        if item == "bug":
            raise KeyError("x")
        return {}

    with pytest.raises(StageError, match=r"^crash: the child process died of SIGKILL$"):
        run_forked_each(["fine", "crash"], work, processes=2, failure=StageError)
    with pytest.raises(InputFileError, match=r"^bad input: unreadable$"):
        run_forked_each(["bad input", "fine"], work, processes=2, failure=StageError)
    with pytest.raises(StageError, match=r"^bug: KeyError: 'x'$"):
        run_forked_each(["bug"], work, processes=1, failure=StageError)


def test_the_earliest_failure_is_raised_and_no_child_starts_after_one(tmp_path: Path) -> None:
    def work(item: int) -> dict[str, Any]:
        (tmp_path / str(item)).touch()
        if item == 2:  # fails at once, while 0 and 1 are still at work
            raise StageError("item 2 failed")
        time.sleep(2 * STAY_SEC)
        if item == 1:
            raise StageError("item 1 failed")
        return {}

    with pytest.raises(StageError, match=r"^item 1 failed$"):
        run_forked_each(list(range(8)), work, processes=3, failure=StageError)
    assert {p.name for p in tmp_path.iterdir()} == {"0", "1", "2"}


def test_run_forked_returns_the_childs_report() -> None:
    assert run_forked("x", lambda: {"pid": os.getpid()})["pid"] != os.getpid()
