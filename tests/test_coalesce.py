"""verseflow.coalesce: lookups made together are answered by one bulk call, each with its own value."""

from __future__ import annotations

import asyncio

import pytest

from verseflow.coalesce import Coalescer


async def test_lookups_of_one_turn_and_those_made_during_a_bulk_call_are_grouped():
    calls: list[list[int]] = []
    release = asyncio.Event()

    async def bulk(keys):
        calls.append(list(keys))
        if len(calls) == 1:
            await release.wait()
        return [k * 10 for k in keys]

    coalescer = Coalescer(bulk, max_in_flight=1)
    first = [coalescer.get(k) for k in (1, 2, 3)]  # one turn: one call
    await asyncio.sleep(0)
    later = [coalescer.get(k) for k in (4, 5)]  # while it is under way: they wait for the next
    await asyncio.sleep(0.01)
    assert calls == [[1, 2, 3]]
    release.set()
    assert await asyncio.gather(*first, *later) == [10, 20, 30, 40, 50]
    assert calls == [[1, 2, 3], [4, 5]]


async def test_a_failed_bulk_call_fails_its_askers_and_the_next_ones_go_on():
    async def bulk(keys):
        if 0 in keys:
            raise ConnectionError("redis went away")
        return list(keys)

    coalescer = Coalescer(bulk, max_batch=2)
    failed = [coalescer.get(k) for k in (0, 1)]
    fine = [coalescer.get(k) for k in (2, 3)]
    for future in failed:
        with pytest.raises(ConnectionError):
            await future
    assert await asyncio.gather(*fine) == [2, 3]
