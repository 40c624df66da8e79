"""Long work on melond's one event loop, a slice at a time, so that other requests are answered
between slices (a bulk act over 100,000 jobs, a listing of them, its JSON)."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

T = TypeVar("T")

SLICE = 2000  # items looked at between two turns of other requests


async def slices(items: Sequence[T]) -> AsyncIterator[Sequence[T]]:
    """`items` SLICE at a time, the event loop given a turn between two slices."""
    for i in range(0, len(items), SLICE):
        if i:
            await asyncio.sleep(0)
        yield items[i:i + SLICE]
