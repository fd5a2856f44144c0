"""Which renditions of a track a listener may receive, and under which plan: the one place that decides it.

Every signed media URL carries the rung set this module grants, and the media deployment refuses
anything outside it, so the decision cannot be bypassed by editing a playlist URL. The plan comes
from the listener's subscription (``billing/subscriptions.py: plan_of``), filtered here by Stripe's
status: ``active`` and ``trialing`` get their plan, ``past_due`` keeps it for a grace period (a
setting), anything else is ``free``. The track's own artist and admins get everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from accounts.model import Principal

STANDARD_RUNGS = frozenset({"aac64", "aac128", "mp3_128"})
ALL_RUNGS = frozenset({"aac64", "aac128", "aac256", "mp3_128", "mp3_320"})

FREE, PREMIUM, FAMILY = "free", "premium", "family"
PAID_PLANS = (PREMIUM, FAMILY)
PLAN_RUNGS = {FREE: STANDARD_RUNGS, PREMIUM: ALL_RUNGS, FAMILY: ALL_RUNGS}

ENTITLED_STATUSES = frozenset({"active", "trialing"})


@dataclass(frozen=True)
class Entitlement:
    tier: str
    rungs: frozenset[str]


def effective_plan(plan: str, status: str, *, past_due_since: datetime | None, now: datetime,
                   grace: timedelta) -> str:
    """The plan a subscription in Stripe ``status`` grants at ``now``."""
    if status in ENTITLED_STATUSES:
        return plan
    if status == "past_due" and past_due_since is not None and now - past_due_since < grace:
        return plan
    return FREE


def media_entitlement(who: Principal, *, owns_track: bool, plan: str = FREE) -> Entitlement:
    """The tier and rungs ``who`` may stream or download for one track, under their effective ``plan``."""
    if who.is_admin or owns_track:
        return Entitlement("owner", ALL_RUNGS)
    if plan in PAID_PLANS:
        return Entitlement(plan, PLAN_RUNGS[plan])
    return Entitlement("standard", STANDARD_RUNGS)
