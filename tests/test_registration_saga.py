"""The registration saga: profile and welcome notification after ``user.registered``, compensation
when a step fails for good, and resumption after a worker crash without redoing completed steps.

Injected failures hit only the user the test registered, since a relay pass also publishes other
tests' pending events to this test's stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest

from accounts import registration
from accounts.model import Role
from accounts.service import register
from verseflow.events.consumer import Consumer
from verseflow.events.relay import OutboxRelay
from verseflow.events.saga import Saga, SagaStatus, Step, StepFunction, load_saga, run_saga


@pytest.fixture
def isolated(settings):
    return settings.model_copy(update={
        "events_stream": f"registration-{uuid.uuid4().hex[:8]}", "consumer_block_ms": 10,
        "consumer_reclaim_idle_ms": 100,
    })


class Crash(BaseException):
    """Stands for the worker process dying mid-step: nothing in the saga or the consumer catches it."""


async def new_user(pool, settings) -> uuid.UUID:
    user = await register(pool, settings, email=f"saga-{uuid.uuid4().hex[:10]}@example.com",
                          password="long enough password", display_name="Saga Tester", role=Role.LISTENER)
    return user.id


def only_for(
    user_id: uuid.UUID, failure: BaseException, real: StepFunction, calls: list[int],
) -> StepFunction:
    """A step that raises ``failure`` for ``user_id`` (counting calls) and behaves as ``real`` for others."""
    async def step(conn, data) -> None:
        if data["user_id"] == str(user_id):
            calls.append(1)
            raise failure
        await real(conn, data)
    return step


def consumer(pool, redis, settings, saga: Saga, group: str) -> Consumer:
    return Consumer(pool, redis, settings, group=group, handlers=registration.handlers(pool, saga))


async def deliver(pool, redis, settings, member: Consumer) -> None:
    """Relay everything committed, then let ``member`` handle until a pass finds nothing more."""
    await OutboxRelay(pool, redis, settings).publish_pending()
    while await member.process_once():
        pass


async def account(pool, user_id: uuid.UUID) -> dict:
    row = await pool.fetchrow(
        """SELECT u.status,
                  EXISTS (SELECT 1 FROM profiles WHERE user_id = u.id) AS has_profile,
                  (SELECT count(*) FROM notifications WHERE user_id = u.id AND kind = 'welcome') AS welcomes,
                  (SELECT array_agg(type ORDER BY seq) FROM outbox WHERE aggregate_id = u.id::text) AS events
           FROM users u WHERE u.id = $1""",
        user_id,
    )
    return dict(row)


def without_delay(saga: Saga) -> Saga:
    return dataclasses.replace(saga, retry_delay_s=0)


async def test_registration_creates_profile_and_welcome_notification(pool, redis, isolated):
    user_id = await new_user(pool, isolated)
    member = consumer(pool, redis, isolated, registration.registration_saga(), f"reg-{uuid.uuid4().hex[:6]}")

    await deliver(pool, redis, isolated, member)

    assert await account(pool, user_id) == {
        "status": "active", "has_profile": True, "welcomes": 1,
        "events": ["user.registered", "notification.created"],
    }
    saga = await load_saga(pool, registration.SAGA_KIND, str(user_id))
    assert saga.status is SagaStatus.COMPLETED and saga.step == 3 and saga.error is None


@pytest.mark.parametrize("failing_step", ["profile", "notification"])
async def test_failing_step_is_compensated(pool, redis, isolated, failing_step):
    user_id = await new_user(pool, isolated)
    calls: list[int] = []
    real = {"profile": registration.create_profile, "notification": registration.create_welcome_notification}
    saga = without_delay(registration.registration_saga(
        **{failing_step: only_for(user_id, RuntimeError("step down"), real[failing_step], calls)}))
    member = consumer(pool, redis, isolated, saga, f"reg-{uuid.uuid4().hex[:6]}")

    await deliver(pool, redis, isolated, member)

    assert calls == [1, 1, 1]  # max_attempts tries, then compensation
    assert await account(pool, user_id) == {
        "status": "disabled", "has_profile": False, "welcomes": 0,
        "events": ["user.registered", "user.registration_failed"],
    }
    state = await load_saga(pool, registration.SAGA_KIND, str(user_id))
    assert state.status is SagaStatus.COMPENSATED and state.step == 0
    assert "step down" in state.error


async def test_a_later_failure_also_removes_the_welcome_notification(pool, isolated):
    user_id = await new_user(pool, isolated)
    base = registration.registration_saga()
    calls: list[int] = []
    saga = without_delay(dataclasses.replace(base, kind="registration-extended", steps=(
        *base.steps,
        Step("next", only_for(user_id, RuntimeError("later step down"), registration.confirm_account, calls)),
    )))

    state = await run_saga(pool, saga, str(user_id), {"user_id": str(user_id), "display_name": "Saga Tester"})

    assert state.status is SagaStatus.COMPENSATED and calls == [1, 1, 1]
    after = await account(pool, user_id)
    assert (after["status"], after["has_profile"], after["welcomes"]) == ("disabled", False, 0)
    assert after["events"] == ["user.registered", "notification.created", "user.registration_failed"]


async def test_failing_compensation_ends_the_saga_failed(pool, isolated):
    user_id = await new_user(pool, isolated)
    calls: list[int] = []

    async def cannot_undo(conn, data) -> None:
        raise RuntimeError("undo down")

    saga = Saga(kind="registration-broken-undo", retry_delay_s=0, steps=(
        Step("profile", registration.create_profile, cannot_undo),
        Step("boom", only_for(user_id, RuntimeError("step down"), registration.create_profile, calls)),
    ))

    state = await run_saga(pool, saga, str(user_id), {"user_id": str(user_id)})

    assert state.status is SagaStatus.FAILED and "undo down" in state.error and calls == [1, 1, 1]
    assert state.step == 1  # the profile step is still done: a person has to look at it
    assert (await account(pool, user_id))["has_profile"]


async def test_saga_resumes_after_a_crash_without_redoing_completed_steps(pool, redis, isolated):
    user_id = await new_user(pool, isolated)
    group = f"reg-{uuid.uuid4().hex[:6]}"
    crashed: list[int] = []
    crashing = consumer(pool, redis, isolated, registration.registration_saga(
        notification=only_for(user_id, Crash(), registration.create_welcome_notification, crashed)), group)

    with pytest.raises(Crash):
        await deliver(pool, redis, isolated, crashing)

    state = await load_saga(pool, registration.SAGA_KIND, str(user_id))
    assert (state.status, state.step) == (SagaStatus.RUNNING, 2)  # account and profile done
    assert (await account(pool, user_id))["has_profile"]

    profile_calls: list[int] = []
    successor = consumer(pool, redis, isolated, registration.registration_saga(
        profile=only_for(user_id, AssertionError("profile step redone"), registration.create_profile,
                         profile_calls)), group)

    async def resumed() -> bool:
        await successor.process_once()  # reclaims the crashed consumer's entry once it is idle
        return (await load_saga(pool, registration.SAGA_KIND, str(user_id))).finished

    for _ in range(300):
        if await resumed():
            break
        await asyncio.sleep(0.05)

    state = await load_saga(pool, registration.SAGA_KIND, str(user_id))
    assert state.status is SagaStatus.COMPLETED
    assert profile_calls == []
    assert await account(pool, user_id) == {
        "status": "active", "has_profile": True, "welcomes": 1,
        "events": ["user.registered", "notification.created"],
    }
