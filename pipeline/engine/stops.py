"""How a run stops dispatching: the reasons (budget, fatal, interrupted), the messages for the
summary, and waits that a stop interrupts (the item waiting then stays pending).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class StopDispatch(Exception):
    """The run stopped dispatching; the item stays pending."""


class Stops:
    """The run's stop state, shared by the pool, the gates and every item's attempts."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.messages: list[str] = []
        self._event = asyncio.Event()
        self._racing: set[asyncio.Task] = set()  # tasks inside race(): a stop cancels them
        self._stopped: set[asyncio.Task] = set()  # ... and those it cancelled

    @property
    def stopping(self) -> bool:
        return self._event.is_set()

    def stop(self, reason: str, message: str | None = None) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)
        if message:
            self.messages.append(message)
        self._event.set()
        current = _current_task()
        for task in self._racing - self._stopped:
            if task is not current:  # the task stopping the run meets it at its next check
                self._stopped.add(task)
                task.cancel()

    def check(self) -> None:
        if self._event.is_set():
            raise StopDispatch

    async def sleep(self, seconds: float) -> None:
        """A backoff sleep that a stop cuts short (raising StopDispatch)."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise StopDispatch

    async def race(self, waiting: Callable[[], Awaitable[T]]) -> T:
        """Wait for what `waiting()` returns unless the run stops first (then StopDispatch).
        A result that arrived is returned even when the run stopped meanwhile: the caller owns
        what it got (a place, a turn) and meets the stop at its next check.

        A wait that is ready at once (the usual case: a free slot, a turn due) costs a plain
        await, no task: a stop cancels the waiting task itself, and this turns that one
        cancellation back into StopDispatch (the way asyncio.timeout() turns its own into
        TimeoutError), so a cancellation from anywhere else still propagates as one."""
        self.check()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Stops.race() needs a running task")
        self._racing.add(task)
        try:
            return await waiting()
        except asyncio.CancelledError:
            if task in self._stopped:
                self._stopped.discard(task)
                if task.uncancel() == 0:
                    raise StopDispatch from None
            raise
        finally:
            self._racing.discard(task)
            if task in self._stopped:  # a cancellation the wait swallowed is taken back too
                self._stopped.discard(task)
                if task.cancelling():
                    task.uncancel()


def _current_task() -> asyncio.Task | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: nothing can be racing
        return None
