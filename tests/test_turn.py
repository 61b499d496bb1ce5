"""Threads taking turns (service/turn.py): one stretch at a time, and never stuck behind one."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import pytest

from pywats_client.service.turn import Turn


def _in_thread(work: Callable[[], object]) -> list[object]:
    """Run `work` in another thread; its result (or exception) once it ends."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(work())
        except BaseException as exc:  # handed to the test
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    return out


@contextlib.contextmanager
def _held_elsewhere(turn: Turn) -> Iterator[None]:
    """Another thread holds `turn` until the block ends."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with turn:
            assert turn.held
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert taken.wait(30)
        yield
    finally:
        release.set()
        thread.join(30)


def _try(turn: Turn) -> bool:
    with turn:
        return turn.held


def test_a_stretch_gets_the_turn_once_its_holder_is_done() -> None:
    turn = Turn(patience=30, long_hold=60)
    result: list[object] = []
    with _held_elsewhere(turn):
        waiter = threading.Thread(target=lambda: result.append(_try(turn)))
        waiter.start()
    waiter.join(30)
    assert result == [True]


def test_a_stretch_goes_on_without_the_turn_when_its_patience_runs_out() -> None:
    turn = Turn(patience=0.01, long_hold=60)
    with _held_elsewhere(turn):
        assert _in_thread(lambda: _try(turn)) == [False]  # not stuck behind the holder
    assert _in_thread(lambda: _try(turn)) == [True]


def test_a_holder_of_long_standing_is_not_waited_for_at_all() -> None:
    turn = Turn(patience=60, long_hold=0)  # a minute of patience, but every hold is long
    with _held_elsewhere(turn):
        assert _in_thread(lambda: _try(turn)) == [False]  # returned with the holder holding


def test_an_eager_stretch_never_waits_but_takes_a_free_turn() -> None:
    turn = Turn(patience=60, long_hold=60)
    eager = turn.eager()
    assert _in_thread(lambda: _try(eager)) == [True]
    with _held_elsewhere(turn):
        assert _in_thread(lambda: _try(eager)) == [False]


def test_turns_nest_and_an_error_gives_the_turn_back() -> None:
    turn = Turn(patience=0.01, long_hold=60)
    with pytest.raises(RuntimeError), turn:
        with turn, turn.eager():
            assert turn.held
        assert turn.held
        raise RuntimeError("a converter bug")
    assert not turn.held
    assert _in_thread(lambda: _try(turn)) == [True]


def test_a_thread_waiting_for_another_sets_its_turn_aside() -> None:
    turn = Turn(patience=60, long_hold=60)
    inside = threading.Event()
    done = threading.Event()
    with turn:
        with turn.set_aside():
            assert not turn.held
            # Another thread gets the turn meanwhile: this one waits for it, as for memory.
            other = threading.Thread(target=lambda: (_try(turn) and inside.set(), done.set()))
            other.start()
            assert done.wait(30)
            other.join(30)
        assert turn.held
    assert inside.is_set()
