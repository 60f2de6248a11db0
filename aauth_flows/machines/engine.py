"""The engine every flow machine shares: events in, actions out, a transition table as data.

A machine is a state (an enum member) plus a frozen *data* value holding everything it
remembers. :meth:`Machine.handle` is the only mutator:

1. it looks ``(state, type(event))`` up in the machine's ``TRANSITIONS`` table; a miss
   raises :class:`~aauth_core.errors.IllegalTransition` and the machine stays in
   ``ERROR`` for good (h11's rule: once a protocol is broken, nothing is trusted);
2. it calls the handler registered for the event type with ``@handles``; the handler is a
   pure function of (state, data, event) and returns a :class:`Step`: the next state, the
   next data and the actions for the driver;
3. the engine checks the next state is one the table allows for that row, then commits
   state and data together.

A handler that raises leaves nothing half-changed: state and data are replaced only after
it has returned. An :class:`~aauth_core.errors.AAuthError` from a handler means the
protocol broke (a peer sent something invalid, or the caller misused the machine): the
machine moves to ``ERROR`` and the error propagates with its wire code and status. Any
other exception (a bug) also leaves the machine in ``ERROR``. A peer
that *validly* refuses is a normal outcome: the handler moves to ``FAILED`` and emits a
:class:`~aauth_flows.machines.actions.Fail` action. Server-side machines turn bad input
into an error *response* (a normal outcome for a server) and never raise for it.

:meth:`Machine.snapshot` / :meth:`Machine.restore` carry state and data through the
cattrs converter as JSON, so a deferred flow begun in one process is finished in another.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar, overload

from attrs import field, frozen

from aauth_core import converter
from aauth_core.errors import IllegalTransition, LocalProtocolError, MalformedInput

__all__ = [
    "Event",
    "Action",
    "Step",
    "Snapshot",
    "Machine",
    "ConfiguredMachine",
    "handles",
    "table",
    "require",
    "narrow",
]

S = TypeVar("S", bound=enum.Enum)
D = TypeVar("D")
C = TypeVar("C")
M = TypeVar("M", bound="Machine[Any, Any]")
T = TypeVar("T")
U = TypeVar("U")


class Event:
    """Base class of everything a driver feeds a machine (frozen attrs subclasses)."""

    __slots__ = ()


class Action:
    """Base class of everything a machine asks its driver to do (frozen attrs subclasses)."""

    __slots__ = ()


def _actions(actions: Iterable[Action]) -> tuple[Action, ...]:
    return tuple(actions)


@frozen(kw_only=True)
class Step(Generic[S, D]):
    """A handler's answer: where the machine goes, what it then remembers, what to do."""

    state: S
    data: D
    actions: tuple[Action, ...] = field(default=(), converter=_actions)


@frozen(kw_only=True)
class Snapshot:
    """A machine at rest, as JSON-compatible data: ``machine`` names the class."""

    machine: str
    state: str
    data: Any

    def to_json(self) -> str:
        return converter.to_json(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> Snapshot:
        return converter.from_json(text, cls)


_HANDLER_ATTR = "__aauth_handles__"

Handler = Callable[[Any, Any, Any, Any], "Step[Any, Any]"]


def handles(*event_types: type[Event]) -> Callable[[Callable[..., Step[Any, Any]]], Any]:
    """Register a method as the handler for ``event_types``.

    The method is called as ``handler(self, state, data, event)`` and returns a
    :class:`Step`; it must not mutate ``self``.
    """

    def mark(fn: Callable[..., Step[Any, Any]]) -> Any:
        setattr(fn, _HANDLER_ATTR, event_types)
        return fn

    return mark


def table(
    rows: Iterable[tuple[S, type[Event], Iterable[S]]],
) -> Mapping[tuple[S, type[Event]], frozenset[S]]:
    """Build a transition table from ``(state, event type, allowed next states)`` rows;
    a repeated ``(state, event type)`` is a programming error."""
    result: dict[tuple[S, type[Event]], frozenset[S]] = {}
    for state, event_type, targets in rows:
        key = (state, event_type)
        if key in result:
            raise ValueError(f"transition ({state}, {event_type.__name__}) is listed twice")
        result[key] = frozenset(targets)
    return result


# -- invariants -------------------------------------------------------------------------------
# ``python -O`` strips ``assert``: a machine states what its own logic guarantees with these
# instead. A failure is the machine's broken invariant (never a peer's bad input: that is
# checked where it arrives), so it is a LocalProtocolError and, raised from a handler, moves
# the machine to ERROR like any other handler error.


def require(value: T | None, what: str) -> T:
    """``value``, which the caller's own logic guarantees is set; ``None`` raises
    :class:`~aauth_core.errors.LocalProtocolError` naming ``what``."""
    if value is None:
        raise LocalProtocolError(f"broken invariant: {what} is not set")
    return value


@overload
def narrow(value: object, cls: type[T], what: str) -> T: ...
@overload
def narrow(value: object, cls: tuple[type[T], type[U]], what: str) -> T | U: ...
def narrow(value: object, cls: type[Any] | tuple[type[Any], ...], what: str) -> Any:
    """``value``, which the caller's own logic guarantees is a ``cls`` (or one of two
    classes); anything else raises :class:`~aauth_core.errors.LocalProtocolError`."""
    if isinstance(value, cls):
        return value
    wanted = " | ".join(c.__name__ for c in cls) if isinstance(cls, tuple) else cls.__name__
    raise LocalProtocolError(f"broken invariant: {what} is a {type(value).__name__}, not {wanted}")


class Machine(Generic[S, D]):
    """One flow machine: subclass it with ``State``, ``DATA``, ``TRANSITIONS``, handlers.

    Class attributes a subclass sets:

    - ``State``: its enum, with members ``ERROR`` (protocol broken) and usually
      ``FAILED`` (a valid refusal) besides its own;
    - ``INITIAL``: the state a new machine starts in;
    - ``DATA``: the frozen attrs class of what it remembers (snapshot-able);
    - ``TRANSITIONS``: ``(state, event type) -> allowed next states`` (see :func:`table`).
    """

    State: ClassVar[type[enum.Enum]]
    INITIAL: ClassVar[Any]
    DATA: ClassVar[type[Any]]
    TRANSITIONS: ClassVar[Mapping[tuple[Any, type[Event]], frozenset[Any]]]
    _handlers: ClassVar[dict[type[Event], Callable[..., Step[Any, Any]]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[type[Event], Callable[..., Step[Any, Any]]] = {}
        for klass in reversed(cls.__mro__):
            for value in vars(klass).values():
                for event_type in getattr(value, _HANDLER_ATTR, ()):
                    handlers[event_type] = value
        cls._handlers = handlers
        transitions = getattr(cls, "TRANSITIONS", None)
        if transitions is not None:
            missing = {et for _, et in transitions if et not in handlers}
            if missing:
                names = sorted(t.__name__ for t in missing)
                raise TypeError(f"{cls.__name__} has table rows without a handler: {names}")

    def __init__(self, *, data: D, state: S | None = None) -> None:
        if not isinstance(data, self.DATA):
            raise TypeError(f"{type(self).__name__} data must be {self.DATA.__name__}")
        self._state: S = self.INITIAL if state is None else state
        self._data: D = data

    @property
    def state(self) -> S:
        return self._state

    @property
    def data(self) -> D:
        """What the machine remembers (a frozen value: reading it cannot change it)."""
        return self._data

    @classmethod
    def events_for(cls, state: S) -> Sequence[type[Event]]:
        """The event types ``state`` accepts, in table order."""
        return [et for (st, et) in cls.TRANSITIONS if st is state]

    def handle(self, event: Event) -> list[Action]:
        """Feed one event; return the actions it causes (the only mutator)."""
        error_state = self.State["ERROR"]
        if self._state is error_state:
            raise IllegalTransition(f"{type(self).__name__} is in ERROR and takes no events")
        key = (self._state, type(event))
        targets = self.TRANSITIONS.get(key)
        if targets is None:
            state = self._state
            self._state = error_state  # type: ignore[assignment]
            raise IllegalTransition(
                f"{type(self).__name__}: no transition for {type(event).__name__} "
                f"in state {state.name}"
            )
        handler = self._handlers[type(event)]
        try:
            step = handler(self, self._state, self._data, event)
        except Exception:
            # A protocol error, or a bug in the handler: either way nothing about this
            # machine can be trusted any more (h11's rule).
            self._state = error_state  # type: ignore[assignment]
            raise
        if step.state not in targets or not isinstance(step.data, self.DATA):
            self._state = error_state  # type: ignore[assignment]
            raise IllegalTransition(
                f"{type(self).__name__}: handler for {type(event).__name__} chose "
                f"{getattr(step.state, 'name', step.state)!s}, allowed "
                f"{sorted(s.name for s in targets)}"
            )
        self._state = step.state
        self._data = step.data
        return list(step.actions)

    def snapshot(self) -> Snapshot:
        """The machine at rest (state and data) as JSON-compatible data."""
        return Snapshot(
            machine=type(self).__name__,
            state=self._state.value,
            data=converter.unstructure(self._data, self.DATA),
        )

    @classmethod
    def initial_snapshot(cls, data: Any) -> Snapshot:
        """The snapshot of a machine that would start in ``INITIAL`` with ``data``: how a
        server stores a pending record it opens, without building the machine first."""
        if not isinstance(data, cls.DATA):
            raise TypeError(f"{cls.__name__} data must be {cls.DATA.__name__}")
        return Snapshot(
            machine=cls.__name__,
            state=cls.INITIAL.value,
            data=converter.unstructure(data, cls.DATA),
        )

    @classmethod
    def restore(cls: type[M], snapshot: Snapshot, **kwargs: Any) -> M:
        """A machine equal to the one that made ``snapshot``; ``kwargs`` go to the
        constructor with ``data=`` and ``state=`` (configuration is never in a snapshot:
        it is the host's).

        A snapshot of another machine, an unknown state or data that does not validate
        raises :class:`~aauth_core.errors.MalformedInput`."""
        if snapshot.machine != cls.__name__:
            raise MalformedInput(f"snapshot of {snapshot.machine[:40]!r}, not {cls.__name__}")
        try:
            state = cls.State(snapshot.state)
        except ValueError:
            raise MalformedInput(f"unknown {cls.__name__} state {snapshot.state[:40]!r}") from None
        data = converter.structure(snapshot.data, cls.DATA)
        return cls(data=data, state=state, **kwargs)


class ConfiguredMachine(Machine[S, D], Generic[S, D, C]):
    """A machine with the host's frozen configuration (``config``; never in a snapshot:
    :meth:`Machine.restore` takes it as a keyword). A new machine starts from
    :meth:`initial_data`."""

    def __init__(self, *, config: C, data: D | None = None, state: S | None = None) -> None:
        super().__init__(data=self.initial_data() if data is None else data, state=state)
        self._config = config

    def initial_data(self) -> D:
        """The data of a new machine: ``DATA()`` (a machine that needs more overrides it,
        or is always built with ``data=``)."""
        data: D = self.DATA()
        return data

    @property
    def config(self) -> C:
        return self._config
