"""The pending-record store: records with indexes written together, expiry, the bound,
per-key locks (events, not timings) and a state-machine model against a dict."""

from __future__ import annotations

import threading

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from aauth_core.interaction import normalize_code
from aauth_flows.io import pending_store
from aauth_flows.io.pending_store import (
    CALLBACK_INDEX,
    CODE_INDEX,
    MemoryPendingStore,
    PendingStore,
    PendingStoreFull,
    code_key,
    code_key_of,
)

NOW = 1_800_000_000
#: a safety net so a broken lock fails the test instead of hanging it (never reached)
STUCK = 10


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryPendingStore:
    return MemoryPendingStore(max_entries=3, clock=clock)


# -- records and indexes -------------------------------------------------------------------


def test_the_memory_store_is_a_pending_store() -> None:
    assert isinstance(MemoryPendingStore(), PendingStore)


def test_a_record_is_stored_replaced_and_deleted(store: MemoryPendingStore) -> None:
    assert store.get("https://ps/pending/1") is None
    store.put("https://ps/pending/1", '{"v":1}', expires_at=NOW + 60)
    assert store.get("https://ps/pending/1") == '{"v":1}'
    store.put("https://ps/pending/1", '{"v":2}', expires_at=NOW + 60)
    assert store.get("https://ps/pending/1") == '{"v":2}'
    assert len(store) == 1
    store.delete("https://ps/pending/1")
    assert store.get("https://ps/pending/1") is None
    store.delete("https://ps/pending/1")  # unknown: nothing to do
    assert len(store) == 0


def test_indexes_lead_to_their_record_and_are_replaced_with_it(
    store: MemoryPendingStore,
) -> None:
    store.put("k", "s1", expires_at=NOW + 60, indexes={CODE_INDEX: "c1", CALLBACK_INDEX: "u1"})
    assert store.find(CODE_INDEX, "c1") == "k"
    assert store.find(CALLBACK_INDEX, "u1") == "k"
    assert store.find(CALLBACK_INDEX, "c1") is None  # indexes are separate namespaces
    # a put replaces the whole index set: the old code no longer leads anywhere
    store.put("k", "s2", expires_at=NOW + 60, indexes={CODE_INDEX: "c2"})
    assert store.find(CODE_INDEX, "c1") is None
    assert store.find(CALLBACK_INDEX, "u1") is None
    assert store.find(CODE_INDEX, "c2") == "k"
    # and another record may now take the freed values
    store.put("j", "s3", expires_at=NOW + 60, indexes={CODE_INDEX: "c1"})
    assert store.find(CODE_INDEX, "c1") == "j"
    store.delete("k")
    assert store.find(CODE_INDEX, "c2") is None
    assert store.find(CODE_INDEX, "c1") == "j"


def test_an_index_value_of_another_live_record_is_refused_and_nothing_changes(
    store: MemoryPendingStore,
) -> None:
    store.put("k", "s1", expires_at=NOW + 60, indexes={CODE_INDEX: "c1"})
    with pytest.raises(ValueError, match="code"):
        store.put("j", "s2", expires_at=NOW + 60, indexes={CALLBACK_INDEX: "u2", CODE_INDEX: "c1"})
    assert store.get("j") is None  # no record without its indexes
    assert store.find(CALLBACK_INDEX, "u2") is None  # and no index without its record
    assert store.find(CODE_INDEX, "c1") == "k"
    assert len(store) == 1


def test_a_refused_new_record_leaves_no_index_behind(store: MemoryPendingStore) -> None:
    for n in range(3):
        store.put(f"k{n}", "s", expires_at=NOW + 60, indexes={CODE_INDEX: f"c{n}"})
    with pytest.raises(PendingStoreFull):
        store.put("k3", "s", expires_at=NOW + 60, indexes={CODE_INDEX: "c3"})
    assert store.find(CODE_INDEX, "c3") is None
    assert store.get("k3") is None


def test_readers_never_see_an_index_without_its_record() -> None:
    store = MemoryPendingStore(max_entries=10_000)
    until = 4_000_000_000
    done = threading.Event()
    torn: list[str] = []

    def writer() -> None:
        for n in range(2000):
            store.put(f"k{n}", f"s{n}", expires_at=until, indexes={CODE_INDEX: f"c{n}"})
        done.set()

    def reader() -> None:
        while not done.is_set():
            for n in range(0, 2000, 7):
                key = store.find(CODE_INDEX, f"c{n}")
                if key is not None and store.get(key) != f"s{n}":
                    torn.append(key)  # an index entry that led to no (or another) record

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STUCK)
    assert done.is_set()
    assert not torn
    assert all(store.find(CODE_INDEX, f"c{n}") == f"k{n}" for n in range(2000))
    assert len(store) == 2000


def test_code_key_hashes_the_normalised_code() -> None:
    assert code_key_of("abcd-efgh") == code_key(normalize_code("ABCDEFGH"))
    assert code_key_of("  ABCD EFGH") is None  # not a code
    assert code_key_of("") is None
    key = code_key(normalize_code("ABCDEFGH"))
    assert "ABCDEFGH" not in key and len(key) == 64


# -- expiry --------------------------------------------------------------------------------


def test_an_expired_record_is_gone_with_its_indexes(
    store: MemoryPendingStore, clock: Clock
) -> None:
    store.put("k", "s", expires_at=NOW + 60, indexes={CODE_INDEX: "c"})
    clock.now = NOW + 59
    assert store.get("k") == "s"
    assert store.find(CODE_INDEX, "c") == "k"
    clock.now = NOW + 60  # expires_at is the first instant it is gone
    assert store.get("k") is None
    assert store.find(CODE_INDEX, "c") is None
    assert len(store) == 0
    # the dead record's index value is free again
    store.put("j", "s", expires_at=NOW + 120, indexes={CODE_INDEX: "c"})
    assert store.find(CODE_INDEX, "c") == "j"


def test_indexes_may_end_before_their_record(store: MemoryPendingStore, clock: Clock) -> None:
    store.put("k", "s", expires_at=NOW + 3600, indexes={CODE_INDEX: "c"}, index_expires_at=NOW + 60)
    clock.now = NOW + 60
    assert store.find(CODE_INDEX, "c") is None  # the code no longer leads to it
    assert store.get("k") == "s"  # a late poll still finds the machine (its 410)
    # an index never outlives its record
    store.put("j", "s", expires_at=NOW + 100, indexes={CODE_INDEX: "d"}, index_expires_at=NOW + 999)
    clock.now = NOW + 100
    assert store.find(CODE_INDEX, "d") is None


def test_expired_records_are_dropped_lazily_when_room_is_needed(
    store: MemoryPendingStore, clock: Clock
) -> None:
    store.put("a", "s", expires_at=NOW + 10)
    store.put("b", "s", expires_at=NOW + 20)
    store.put("c", "s", expires_at=NOW + 30)
    clock.now = NOW + 20  # a and b are dead but still held until someone needs room
    store.put("d", "s", expires_at=NOW + 40)
    store.put("e", "s", expires_at=NOW + 40)
    assert [store.get(k) for k in "abcde"] == [None, None, "s", "s", "s"]


# -- the bound -----------------------------------------------------------------------------


def test_full_of_live_records_refuses_a_new_one_rather_than_evicting(
    store: MemoryPendingStore, clock: Clock
) -> None:
    for key in "abc":
        store.put(key, key, expires_at=NOW + 60)
    with pytest.raises(PendingStoreFull) as refused:
        store.put("d", "d", expires_at=NOW + 60)
    assert refused.value.status == 503
    assert refused.value.code == "temporarily_unavailable"
    assert [store.get(k) for k in "abc"] == ["a", "b", "c"]  # nobody's request lost
    store.put("b", "b2", expires_at=NOW + 90)  # a known record may still be replaced
    assert store.get("b") == "b2"
    clock.now = NOW + 60  # a and c expire: room again
    store.put("d", "d", expires_at=NOW + 120)
    assert store.get("d") == "d"


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryPendingStore(max_entries=0)


# -- per-key locks -------------------------------------------------------------------------


class _ProbeLock:
    """A lock that tells when a caller found it held and had to wait."""

    waited: threading.Event

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            _ProbeLock.waited.set()
            self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Every per-key lock of a store becomes a :class:`_ProbeLock`; the event is set
    when any acquirer found its key's lock held."""
    waited = threading.Event()
    _ProbeLock.waited = waited

    class ProbedKeyLock(pending_store._KeyLock):
        def __init__(self) -> None:
            super().__init__()
            self.lock = _ProbeLock()  # type: ignore[assignment]

    monkeypatch.setattr(pending_store, "_KeyLock", ProbedKeyLock)
    return waited


def _holder(
    store: PendingStore,
    key: str,
    inside: threading.Event,
    leave: threading.Event,
    order: list[str],
    name: str,
) -> threading.Thread:
    def run() -> None:
        with store.lock(key):
            order.append(f"{name} in")
            inside.set()
            leave.wait(STUCK)
            order.append(f"{name} out")

    return threading.Thread(target=run)


def test_two_threads_on_one_key_take_turns(probe: threading.Event) -> None:
    store = MemoryPendingStore()
    order: list[str] = []
    a_in, a_leave, b_in, b_leave = (threading.Event() for _ in range(4))
    a = _holder(store, "https://as/pending/1", a_in, a_leave, order, "a")
    b = _holder(store, "https://as/pending/1", b_in, b_leave, order, "b")
    a.start()
    assert a_in.wait(STUCK)
    b.start()
    assert probe.wait(STUCK)  # b found the record's lock held by a, and waits
    assert not b_in.is_set()
    a_leave.set()
    assert b_in.wait(STUCK)  # a left: b's turn
    b_leave.set()
    a.join(STUCK)
    b.join(STUCK)
    assert order == ["a in", "a out", "b in", "b out"]
    assert store.locked_keys() == 0  # nothing kept for the key once both left


def test_two_keys_never_wait_on_each_other(probe: threading.Event) -> None:
    store = MemoryPendingStore()
    order: list[str] = []
    a_in, a_leave, b_in, b_leave = (threading.Event() for _ in range(4))
    a = _holder(store, "https://as/pending/1", a_in, a_leave, order, "a")
    b = _holder(store, "https://as/pending/2", b_in, b_leave, order, "b")
    a.start()
    assert a_in.wait(STUCK)
    b.start()
    assert b_in.wait(STUCK)  # b got its record while a still holds its own
    assert not probe.is_set()  # and never found its lock held
    assert order == ["a in", "b in"]
    assert store.locked_keys() == 2
    b_leave.set()
    a_leave.set()
    a.join(STUCK)
    b.join(STUCK)
    assert store.locked_keys() == 0


def test_a_held_key_does_not_block_reads_and_writes_of_other_records() -> None:
    store = MemoryPendingStore()
    store.put("k", "s", expires_at=4_000_000_000, indexes={CODE_INDEX: "c"})
    with store.lock("k"):
        # the store's own operations never take a record's lock
        store.put("j", "t", expires_at=4_000_000_000)
        assert store.get("k") == "s"
        assert store.find(CODE_INDEX, "c") == "k"
        with store.lock("j"):
            assert store.locked_keys() == 2
    assert store.locked_keys() == 0


def test_the_lock_is_released_when_the_step_fails() -> None:
    store = MemoryPendingStore()
    with pytest.raises(RuntimeError), store.lock("k"):
        raise RuntimeError("the machine crashed")
    assert store.locked_keys() == 0
    with store.lock("k"):  # free again
        pass


def test_many_threads_on_one_key_never_overlap() -> None:
    store = MemoryPendingStore()
    store.put("k", "0", expires_at=4_000_000_000)
    inside = 0
    most = 0
    guard = threading.Lock()

    def step() -> None:
        nonlocal inside, most
        for _ in range(50):
            with store.lock("k"):
                with guard:
                    inside += 1
                    most = max(most, inside)
                value = int(store.get("k") or "0")
                store.put("k", str(value + 1), expires_at=4_000_000_000)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=step) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STUCK)
    assert most == 1
    assert store.get("k") == "400"  # no lost update


# -- a model ---------------------------------------------------------------------------------

_KEYS = st.sampled_from(["a", "b", "c", "d"])
_VALUES = st.sampled_from(["x", "y", "z"])
_INDEXES = st.dictionaries(st.sampled_from([CODE_INDEX, CALLBACK_INDEX]), _VALUES, max_size=2)


class StoreAgainstModel(RuleBasedStateMachine):
    """Every operation on a small store against a dict: key → (snapshot, expiry,
    indexes, index expiry)."""

    BOUND = 3

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.store = MemoryPendingStore(max_entries=self.BOUND, clock=self.clock)
        self.model: dict[str, tuple[str, float, dict[str, str], float]] = {}
        self.serial = 0

    def _live(self) -> dict[str, tuple[str, float, dict[str, str], float]]:
        now = self.clock.now
        return {k: v for k, v in self.model.items() if v[1] > now}

    @rule(
        key=_KEYS,
        ttl=st.integers(min_value=1, max_value=20),
        indexes=_INDEXES,
        index_ttl=st.none() | st.integers(min_value=0, max_value=30),
    )
    def put(self, key: str, ttl: int, indexes: dict[str, str], index_ttl: int | None) -> None:
        self.serial += 1
        snapshot = f"s{self.serial}"
        now = self.clock.now
        live = self._live()
        index_until = now + ttl if index_ttl is None else min(now + index_ttl, now + ttl)
        clash = any(
            other != key and entry in held[2].items()
            for other, held in live.items()
            for entry in indexes.items()
        )
        full = key not in live and len(live) >= self.BOUND
        expected: type[Exception] | None = ValueError if clash else None
        if expected is None and full:
            expected = PendingStoreFull

        def write() -> None:
            self.store.put(
                key,
                snapshot,
                expires_at=now + ttl,
                indexes=indexes,
                index_expires_at=None if index_ttl is None else now + index_ttl,
            )

        if expected is not None:
            with pytest.raises(expected):
                write()
            return
        write()
        self.model[key] = (snapshot, now + ttl, dict(indexes), index_until)

    @rule(key=_KEYS)
    def delete(self, key: str) -> None:
        self.store.delete(key)
        self.model.pop(key, None)

    @rule(seconds=st.integers(min_value=0, max_value=12))
    def advance(self, seconds: int) -> None:
        self.clock.now += seconds

    @rule(key=_KEYS)
    def get(self, key: str) -> None:
        held = self._live().get(key)
        assert self.store.get(key) == (None if held is None else held[0])

    @rule(name=st.sampled_from([CODE_INDEX, CALLBACK_INDEX]), value=_VALUES)
    def find(self, name: str, value: str) -> None:
        now = self.clock.now
        owners = [k for k, v in self._live().items() if v[2].get(name) == value and v[3] > now]
        assert len(owners) <= 1
        assert self.store.find(name, value) == (owners[0] if owners else None)

    @invariant()
    def agrees(self) -> None:
        live = self._live()
        assert len(self.store) == len(live)
        for key, held in live.items():
            assert self.store.get(key) == held[0]
            for name, value in held[2].items():
                found = self.store.find(name, value)
                assert found == (key if held[3] > self.clock.now else None)
                if found is not None:
                    assert self.store.get(found) is not None  # never an index alone


StoreAgainstModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40)
test_the_store_agrees_with_a_dict_model = StoreAgainstModel.TestCase
