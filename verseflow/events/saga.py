"""A small persisted saga orchestrator over the ``sagas`` table.

Multi-step flows (registration, subscription activation, upload processing) span several
transactions, so they cannot roll back as one. A saga is an ordered list of steps, each an action
and the compensation that undoes it. Each action runs in its own transaction together with the
update of the saga's row (next step, the ``data`` the action may have added), so a step's effects
and the record that it happened commit together: a worker that crashes mid-saga leaves either the
step done and recorded or neither, and whoever runs the saga next resumes at the first step not
done, never redoing one. Only effects made through the step's connection get that guarantee; a step
that calls out elsewhere must be idempotent.

A failing step is retried ``max_attempts`` times (its failed attempt rolled back), then the completed
steps are compensated in reverse order, each in its own transaction, and the saga ends
``compensated``; if a compensation itself keeps failing it ends ``failed`` and needs a person.
Every transition re-reads the row under ``FOR UPDATE``, so two workers running the same saga at
once (a redelivered event) never run the same step twice.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg

from verseflow import logs
from verseflow.db import transaction

log = logs.get_logger("events.saga")

_BY_SUBJECT = "SELECT * FROM sagas WHERE kind = $1 AND subject_id = $2"

# An action or compensation: runs inside the step's transaction; may add JSON values to ``data``.
StepFunction = Callable[[asyncpg.Connection, dict[str, Any]], Awaitable[None]]


class SagaStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    FAILED = "failed"


@dataclass(frozen=True)
class Step:
    name: str
    action: StepFunction
    compensation: StepFunction | None = None  # None: the action leaves nothing to undo


@dataclass(frozen=True)
class Saga:
    """A saga definition; ``kind`` plus a subject id names one saga instance in the table."""

    kind: str
    steps: Sequence[Step]
    max_attempts: int = 3
    retry_delay_s: float = 0.5  # multiplied by the attempt number


@dataclass(frozen=True)
class SagaState:
    """One row of ``sagas``.

    ``step`` is the next step to run; while compensating, how many completed steps are still to undo.
    """

    id: uuid.UUID
    kind: str
    subject_id: str
    status: SagaStatus
    step: int
    attempts: int
    data: dict[str, Any]
    error: str | None

    @property
    def finished(self) -> bool:
        return self.status not in (SagaStatus.RUNNING, SagaStatus.COMPENSATING)


async def run_saga(pool: asyncpg.Pool, saga: Saga, subject_id: str, data: dict[str, Any]) -> SagaState:
    """Start the saga for ``subject_id`` (or resume it where it stopped) and drive it to its end.

    ``data`` seeds a new saga; a saga that already exists keeps its own. Running a finished saga
    again returns its final state.
    """
    state = await _start(pool, saga.kind, subject_id, data)
    while not state.finished:
        state = await _transition(pool, saga, state)
    if state.status is not SagaStatus.COMPLETED:
        log.warning("saga %s %s ended %s: %s", saga.kind, subject_id, state.status, state.error)
    return state


async def load_saga(pool: asyncpg.Pool, kind: str, subject_id: str) -> SagaState | None:
    row = await pool.fetchrow(_BY_SUBJECT, kind, subject_id)
    return _state(row) if row else None


async def _start(pool: asyncpg.Pool, kind: str, subject_id: str, data: dict[str, Any]) -> SagaState:
    await pool.execute(
        """INSERT INTO sagas (id, kind, subject_id, status, data) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (kind, subject_id) DO NOTHING""",
        uuid.uuid4(), kind, subject_id, SagaStatus.RUNNING.value, data,
    )
    return _state(await pool.fetchrow(_BY_SUBJECT, kind, subject_id))


async def _transition(pool: asyncpg.Pool, saga: Saga, state: SagaState) -> SagaState:
    """Take one step forward or back, or settle the final status."""
    if state.status is SagaStatus.RUNNING:
        if state.step == len(saga.steps):
            return await _save(pool, state, status=SagaStatus.COMPLETED)
        step = saga.steps[state.step]
        return await _attempt(pool, saga, state, step.name, step.action,
                              done={"step": state.step + 1, "error": None},
                              exhausted={"status": SagaStatus.COMPENSATING})
    if state.step == 0:
        return await _save(pool, state, status=SagaStatus.COMPENSATED)
    step = saga.steps[state.step - 1]
    return await _attempt(pool, saga, state, f"undo {step.name}", step.compensation,
                          done={"step": state.step - 1}, exhausted={"status": SagaStatus.FAILED})


async def _attempt(
    pool: asyncpg.Pool, saga: Saga, state: SagaState, label: str, function: StepFunction | None, *,
    done: dict[str, Any], exhausted: dict[str, Any],
) -> SagaState:
    """Run ``function`` once in a transaction with the state change ``done``; on failure count the attempt."""
    try:
        async with transaction(pool) as conn:
            current = _state(await conn.fetchrow("SELECT * FROM sagas WHERE id = $1 FOR UPDATE", state.id))
            if (current.status, current.step) != (state.status, state.step):
                return current  # another worker moved this saga on meanwhile
            data = copy.deepcopy(current.data)
            if function is not None:
                await function(conn, data)
            return await _update(conn, current, data=data, attempts=0, **done)
    except Exception as exc:  # whatever a step raises is the saga's to handle
        attempts = state.attempts + 1
        error = f"{label}: {exc!r}"
        log.warning("saga %s %s: %s failed (attempt %d of %d)", saga.kind, state.subject_id, error, attempts,
                    saga.max_attempts)
        if attempts >= saga.max_attempts:
            return await _save(pool, state, attempts=0, error=error, **exhausted)
        retry = await _save(pool, state, attempts=attempts, error=error)
        await asyncio.sleep(saga.retry_delay_s * attempts)
        return retry


async def _save(pool: asyncpg.Pool, expected: SagaState, **changes: Any) -> SagaState:
    async with transaction(pool) as conn:
        return await _update(conn, expected, **changes)


async def _update(conn: asyncpg.Connection, expected: SagaState, **changes: Any) -> SagaState:
    """Write ``changes`` unless another worker moved the saga on since ``expected``; return the row now."""
    new = dataclasses.replace(expected, **changes)
    row = await conn.fetchrow(
        """UPDATE sagas SET status = $2, step = $3, attempts = $4, data = $5, error = $6, updated_at = now()
           WHERE id = $1 AND status = $7 AND step = $8 RETURNING *""",
        new.id, new.status.value, new.step, new.attempts, new.data, new.error,
        expected.status.value, expected.step,
    )
    return _state(row or await conn.fetchrow("SELECT * FROM sagas WHERE id = $1", expected.id))


def _state(row: asyncpg.Record) -> SagaState:
    return SagaState(
        id=row["id"], kind=row["kind"], subject_id=row["subject_id"], status=SagaStatus(row["status"]),
        step=row["step"], attempts=row["attempts"], data=row["data"], error=row["error"],
    )
