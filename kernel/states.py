"""A process's life as an explicit state machine: states, events and the transition table.

::

    STARTING --started--> RUNNING --exited--> EXITED --restart_scheduled--> RESTARTING
        ^                                       |                              |
        +------------------- restart -----------+------------------------------+
    any state but KILLED --kill--> KILLED

``EXITED`` with on-exit None or Requests is final: the kernel removes the process (as the
reference does). ``KILLED`` is final.
"""

from __future__ import annotations

import enum

__all__ = ["FINAL", "TRANSITIONS", "Event", "InvalidTransition", "State", "transition"]


class State(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    EXITED = "exited"
    RESTARTING = "restarting"
    KILLED = "killed"


class Event(enum.Enum):
    STARTED = "started"  # its thread is running the runtime
    EXITED = "exited"  # run() returned, crashed or could not be made
    RESTART_SCHEDULED = "restart-scheduled"  # on-exit Restart: waiting out the backoff
    RESTART = "restart"  # the backoff is over: start it again
    KILL = "kill"  # killed (hnet kill, kernel shutdown)


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.STARTING, Event.STARTED): State.RUNNING,
    (State.STARTING, Event.EXITED): State.EXITED,
    (State.RUNNING, Event.EXITED): State.EXITED,
    (State.EXITED, Event.RESTART_SCHEDULED): State.RESTARTING,
    (State.EXITED, Event.RESTART): State.STARTING,
    (State.RESTARTING, Event.RESTART): State.STARTING,
    (State.STARTING, Event.KILL): State.KILLED,
    (State.RUNNING, Event.KILL): State.KILLED,
    (State.EXITED, Event.KILL): State.KILLED,
    (State.RESTARTING, Event.KILL): State.KILLED,
}

#: States a process leaves only by being removed (or, EXITED, by a restart).
FINAL = frozenset({State.EXITED, State.KILLED})


class InvalidTransition(Exception):
    """An event that the table does not allow in this state (a kernel bug)."""


def transition(state: State, event: Event) -> State:
    """The state after ``event`` in ``state``; :class:`InvalidTransition` if not allowed."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(f"{event.value} in state {state.value}") from None
