"""The replay cache: keys, windows, the bound, and concurrent callers."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aauth_flows.io.replay import MemoryReplayCache, ReplayCache, ReplayCacheFull, replay_key

JKT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
NOW = 1_800_000_000


# --- replay_key -------------------------------------------------------------------------


def test_replay_key_is_a_fixed_size_digest_of_every_component() -> None:
    base = replay_key(JKT, NOW, "POST", "rs.aauth.test", "/calendar")
    assert base == replay_key(JKT, NOW, "POST", "rs.aauth.test", "/calendar")
    assert len(base) == 43  # base64url SHA-256, unpadded
    assert len(replay_key(JKT * 100, NOW, "POST", "x" * 5000, "/" * 5000)) == 43
    variants = {
        replay_key("other", NOW, "POST", "rs.aauth.test", "/calendar"),
        replay_key(JKT, NOW + 1, "POST", "rs.aauth.test", "/calendar"),
        replay_key(JKT, NOW, "GET", "rs.aauth.test", "/calendar"),
        replay_key(JKT, NOW, "POST", "ps.aauth.test", "/calendar"),
        replay_key(JKT, NOW, "POST", "rs.aauth.test", "/calendar/1"),
    }
    assert base not in variants
    assert len(variants) == 5


def test_replay_key_components_cannot_bleed_into_each_other() -> None:
    assert replay_key("a", 1, "GET", "b.c", "/d") != replay_key("a", 1, "GET", "b", ".c/d")
    assert replay_key("a,", 1, "GET", "b", "/") != replay_key("a", 1, ",GET", "b", "/")
    assert replay_key('a"', 1, "GET", "b", "/") != replay_key("a", 1, '"GET', "b", "/")


def test_replay_key_refuses_a_non_integer_created() -> None:
    with pytest.raises(TypeError):
        replay_key(JKT, True, "GET", "rs.aauth.test", "/")
    with pytest.raises(TypeError):
        replay_key(JKT, "1800000000", "GET", "rs.aauth.test", "/")  # type: ignore[arg-type]


# --- MemoryReplayCache ------------------------------------------------------------------


def test_memory_cache_is_a_replay_cache() -> None:
    assert isinstance(MemoryReplayCache(), ReplayCache)


def test_first_sighting_is_recorded_and_the_second_is_a_replay() -> None:
    cache = MemoryReplayCache()
    assert cache.check_and_add("k", NOW + 60, now=NOW) is True
    assert cache.check_and_add("k", NOW + 60, now=NOW + 1) is False
    assert cache.check_and_add("k", NOW + 60, now=NOW + 60) is False  # ``until`` inclusive
    assert cache.check_and_add("other", NOW + 60, now=NOW + 1) is True


def test_an_entry_expires_after_its_window_and_is_dropped() -> None:
    cache = MemoryReplayCache()
    assert cache.check_and_add("k", NOW + 60, now=NOW)
    assert cache.check_and_add("j", NOW + 10, now=NOW)
    assert len(cache) == 2
    assert cache.check_and_add("x", NOW + 100, now=NOW + 11)
    assert len(cache) == 2  # "j" dropped
    assert cache.check_and_add("k", NOW + 120, now=NOW + 61) is True  # a new window
    assert cache.check_and_add("k", NOW + 120, now=NOW + 62) is False


def test_a_later_window_for_a_live_key_extends_it() -> None:
    cache = MemoryReplayCache()
    assert cache.check_and_add("k", NOW + 10, now=NOW)
    assert not cache.check_and_add("k", NOW + 100, now=NOW + 5)
    assert not cache.check_and_add("k", NOW + 100, now=NOW + 50)  # still live: extended


def test_a_window_already_over_is_not_recorded() -> None:
    cache = MemoryReplayCache()
    assert cache.check_and_add("k", NOW - 1, now=NOW) is True
    assert len(cache) == 0


def test_full_of_live_entries_refuses_rather_than_forgets() -> None:
    cache = MemoryReplayCache(max_entries=2)
    assert cache.check_and_add("a", NOW + 60, now=NOW)
    assert cache.check_and_add("b", NOW + 30, now=NOW)
    with pytest.raises(ReplayCacheFull) as info:
        cache.check_and_add("c", NOW + 60, now=NOW + 1)
    assert info.value.status == 503
    assert info.value.code == "temporarily_unavailable"
    # the live entries are still remembered: replays are still caught
    assert cache.check_and_add("a", NOW + 60, now=NOW + 2) is False
    assert cache.check_and_add("b", NOW + 30, now=NOW + 2) is False
    # once "b" expires there is room again
    assert cache.check_and_add("c", NOW + 90, now=NOW + 31) is True
    assert cache.check_and_add("c", NOW + 90, now=NOW + 32) is False


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryReplayCache(max_entries=0)


def test_now_defaults_to_the_wall_clock() -> None:
    cache = MemoryReplayCache()
    until = int(time.time()) + 300
    assert cache.check_and_add("k", until) is True
    assert cache.check_and_add("k", until) is False


def test_the_heap_stays_bounded_under_repeated_extensions() -> None:
    cache = MemoryReplayCache(max_entries=4)
    for step in range(100):
        cache.check_and_add("k", NOW + 10 + step, now=NOW)
    assert cache.check_and_add("k", NOW + 200, now=NOW + 108) is False
    assert len(cache._expiry) <= 2 * cache.max_entries + 1
    assert cache.check_and_add("k", NOW + 400, now=NOW + 201) is True


# --- a model over arbitrary interleavings -----------------------------------------------

_operation = st.tuples(
    st.sampled_from(["a", "b", "c", "d", "e"]),  # key
    st.integers(min_value=0, max_value=5),  # time advance
    st.integers(min_value=-3, max_value=20),  # window length (until - now)
)


@settings(max_examples=300)
@given(st.lists(_operation, max_size=60), st.integers(min_value=1, max_value=4))
def test_the_cache_agrees_with_a_model(operations: list[tuple[str, int, int]], bound: int) -> None:
    cache = MemoryReplayCache(max_entries=bound)
    model: dict[str, int] = {}
    now = NOW
    for key, advance, window in operations:
        now += advance
        until = now + window
        live = {k: u for k, u in model.items() if u >= now}
        if key in live:
            assert cache.check_and_add(key, until, now=now) is False
            model[key] = max(live[key], until)
        elif until < now:
            assert cache.check_and_add(key, until, now=now) is True
        elif len(live) >= bound:
            with pytest.raises(ReplayCacheFull):
                cache.check_and_add(key, until, now=now)
        else:
            assert cache.check_and_add(key, until, now=now) is True
            model[key] = until
        model = {k: u for k, u in model.items() if u >= now}
        assert len(cache) <= bound


# --- threads ----------------------------------------------------------------------------


@pytest.fixture
def eager_switching() -> Iterator[None]:
    """Switch threads as often as the interpreter can, so that races show up."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


class _YieldingDict(dict[str, int]):
    def get(self, key: str, default: Any = None) -> Any:
        value = super().get(key, default)
        time.sleep(0)  # let another thread run between the lookup and the insert
        return value


@pytest.mark.usefixtures("eager_switching")
def test_concurrent_callers_see_each_key_exactly_once() -> None:
    cache = MemoryReplayCache()
    cache._entries = _YieldingDict()  # widen the window between lookup and insert
    keys = [replay_key(JKT, NOW + i, "POST", "rs.aauth.test", "/x") for i in range(300)]
    threads = 8
    barrier = threading.Barrier(threads)
    firsts: list[list[str]] = [[] for _ in range(threads)]

    def worker(index: int) -> None:
        barrier.wait()
        for key in keys:
            if cache.check_and_add(key, NOW + 60, now=NOW):
                firsts[index].append(key)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    accepted = [key for first in firsts for key in first]
    assert sorted(accepted) == sorted(keys)  # every key accepted once, no key twice


@pytest.mark.usefixtures("eager_switching")
def test_concurrent_callers_never_exceed_the_bound() -> None:
    cache = MemoryReplayCache(max_entries=50)
    accepted: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def worker(index: int) -> None:
        barrier.wait()
        for i in range(40):
            key = f"{index}-{i}"
            try:
                ok = cache.check_and_add(key, NOW + 60, now=NOW)
            except ReplayCacheFull:
                with lock:
                    refused.append(key)
            else:
                assert ok
                with lock:
                    accepted.append(key)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert len(accepted) == 50
    assert len(refused) == 110
    assert len(cache) == 50
