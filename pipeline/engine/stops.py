"""How a run stops dispatching: the reasons (budget, fatal, interrupted), the messages for the
summary, and waits that a stop interrupts (the item waiting then stays pending).
"""

from __future__ import annotations

import asyncio
import contextlib
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

    @property
    def stopping(self) -> bool:
        return self._event.is_set()

    def stop(self, reason: str, message: str | None = None) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)
        if message:
            self.messages.append(message)
        self._event.set()

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
        """Wait for what `waiting()` returns unless the run stops first (then StopDispatch);
        returns its result."""
        self.check()
        turn = asyncio.ensure_future(waiting())
        stop = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({turn, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not turn.done():
                turn.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await turn
        self.check()
        return turn.result()
