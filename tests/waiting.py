"""Waiting in tests: poll a condition until it holds, with a generous deadline, instead of sleeping then asserting.

A test asserts what happened, not how fast: deadlines here are generous (a loaded machine must not fail a test),
and speed is measured in ``bench/``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _timed_out(timeout: float, what: str, last: object) -> AssertionError:
    return AssertionError(f"timed out after {timeout:g} s waiting for {what}; last seen: {last!r}")


def wait_until(condition: Callable[[], T], timeout: float, what: str, *, every: float = 0.05) -> T:
    """Poll `condition` until it returns a true value and return that value; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what, value)
        time.sleep(every)


async def wait_until_async(
    condition: Callable[[], T | Awaitable[T]], timeout: float, what: str, *, every: float = 0.05
) -> T:
    """`wait_until` inside an event loop: the loop runs between polls; `condition` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what, value)
        await asyncio.sleep(every)
