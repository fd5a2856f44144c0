"""``/v1/billing/...``, ``/v1/me/subscription`` and artists' statements: subscribing through Stripe,
Stripe's webhooks, royalty statements.

Thin: every rule is in ``billing/subscriptions.py``. The webhook route reads the raw body, because
Stripe's signature covers the exact bytes sent.
"""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from billing import family, reports, royalties, subscriptions
from serve_deployments.deps import Ctx, CurrentUser
from verseflow.errors import Forbidden

router = APIRouter(tags=["billing"])

PaidPlan = Literal["premium", "family"]


class SubscribeIn(BaseModel):
    plan: PaidPlan
    payment_method: str | None = Field(None, pattern=r"^pm_[A-Za-z0-9_]{1,100}$",
                                       description="a Stripe PaymentMethod id (Stripe.js), or a test one "
                                                   "such as pm_card_visa in test mode")


class ChangePlanIn(BaseModel):
    plan: PaidPlan


class InviteOut(BaseModel):
    code: str = Field(description="single-use; shown once: pass it to the person you invite")
    expires_at: datetime


class JoinIn(BaseModel):
    code: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z2-7]+$")


class MemberOut(BaseModel):
    user_id: uuid.UUID
    display_name: str
    joined_at: datetime


class FamilyOut(BaseModel):
    role: Literal["owner", "member"]
    owner_id: uuid.UUID
    owner_name: str
    plan_active: bool = Field(description="the owner's family plan grants its seats now")
    members: list[MemberOut]
    seats_used: int
    seats_max: int


def _family_out(view: family.Family) -> FamilyOut:
    return FamilyOut(role=view.role, owner_id=view.owner_id, owner_name=view.owner_name, plan_active=view.plan_active,
                     members=[MemberOut(user_id=m.user_id, display_name=m.display_name, joined_at=m.joined_at)
                              for m in view.members],
                     seats_used=view.seats_used, seats_max=view.seats_max)


class MrrOut(BaseModel):
    plan: str
    currency: str
    amount: int = Field(description="minor units per month")


class RevenueOut(BaseModel):
    plan: str
    currency: str
    revenue: int = Field(description="minor units booked to the plan's revenue in the month (prorations included)")


class ReportOut(BaseModel):
    month: str
    mrr_at: datetime
    mrr: list[MrrOut]
    churn_rate: float = Field(description="subscriptions that ended in the month / live at its start")
    subscribers_at_start: int
    revenue: list[RevenueOut]


class PlanOfferOut(BaseModel):
    plan: PaidPlan
    amount: int = Field(description="minor units per interval")
    currency: str
    interval: Literal["month"]
    seats: int = Field(description="accounts the plan covers, its owner included")


class PlansOut(BaseModel):
    plans: list[PlanOfferOut]
    test_mode: bool = Field(description="Stripe test mode: test payment methods such as pm_card_visa are accepted")
    publishable_key: str | None = Field(description="Stripe.js's key: cards are collected with Stripe's Payment "
                                                    "Element (POST /v1/billing/setup-intent); null without one")


class SetupIntentOut(BaseModel):
    client_secret: str = Field(description="for stripe.elements({clientSecret}) and stripe.confirmSetup; the "
                                           "payment method it saves is then sent as `payment_method`")


class WebhookOut(BaseModel):
    received: bool = True
    result: Literal["applied", "duplicate", "ignored"]


@router.get("/v1/billing/plans", response_model=PlansOut)
async def plans(ctx: Ctx):
    """The paid plans on offer with their prices, and whether payments are in Stripe's test mode."""
    return subscriptions.plan_offers(ctx.settings)


@router.post("/v1/billing/setup-intent", response_model=SetupIntentOut, status_code=201)
async def create_setup_intent(ctx: Ctx, who: CurrentUser):
    """Open a card form: a Stripe SetupIntent for the caller, for Stripe's Payment Element to confirm."""
    return SetupIntentOut(client_secret=await subscriptions.setup_intent(ctx.pool, ctx.settings, who))


@router.post("/v1/billing/subscription", response_model=dict[str, Any])
async def subscribe(body: SubscribeIn, ctx: Ctx, who: CurrentUser):
    """Subscribe to a plan and pay the first month now (402 when the card is declined).

    Safe to retry: the same request again, even concurrently, never makes a second subscription or charge.
    """
    return await subscriptions.subscribe(ctx.pool, ctx.settings, who, plan=body.plan,
                                         payment_method=body.payment_method)


@router.patch("/v1/billing/subscription", response_model=dict[str, Any])
async def change_plan(body: ChangePlanIn, ctx: Ctx, who: CurrentUser):
    """Change plan: an upgrade is prorated and charged now, a downgrade is credited on the next invoice."""
    return await subscriptions.change_plan(ctx.pool, ctx.settings, who, plan=body.plan)


@router.post("/v1/billing/subscription/cancel", response_model=dict[str, Any])
async def cancel(ctx: Ctx, who: CurrentUser):
    """Cancel at the end of the paid period: the plan lasts until then."""
    return await subscriptions.set_cancel_at_period_end(ctx.pool, ctx.settings, who, True)


@router.post("/v1/billing/subscription/resume", response_model=dict[str, Any])
async def resume(ctx: Ctx, who: CurrentUser):
    """Undo a cancellation before the period ends."""
    return await subscriptions.set_cancel_at_period_end(ctx.pool, ctx.settings, who, False)


@router.get("/v1/me/subscription", response_model=dict[str, Any])
async def my_subscription(ctx: Ctx, who: CurrentUser):
    """The plan granted now, the subscription's Stripe status and period, and the next invoice."""
    return await subscriptions.subscription_view(ctx.pool, ctx.settings, who)


@router.get("/v1/me/family", response_model=FamilyOut)
async def my_family(ctx: Ctx, who: CurrentUser):
    """The family the caller owns or is a member of: who shares it and how many seats are left."""
    return _family_out(await family.family_of(ctx.pool, ctx.settings, who))


@router.post("/v1/me/family/invites", response_model=InviteOut, status_code=201)
async def invite_to_family(ctx: Ctx, who: CurrentUser):
    """A single-use invitation to one seat of the caller's family plan (409 without the plan or a free seat)."""
    created = await family.invite(ctx.pool, ctx.settings, who)
    return InviteOut(code=created.code, expires_at=created.expires_at)


@router.post("/v1/me/family/join", response_model=FamilyOut)
async def join_family(body: JoinIn, ctx: Ctx, who: CurrentUser):
    """Redeem an invitation: stream under its family plan from the next stream grant."""
    return _family_out(await family.join(ctx.pool, ctx.settings, who, code=body.code))


@router.delete("/v1/me/family/members/{member_id}", status_code=204)
async def remove_family_member(member_id: uuid.UUID, ctx: Ctx, who: CurrentUser):
    """The owner takes a member's seat back."""
    await family.remove(ctx.pool, who, member_id)
    return Response(status_code=204)


@router.delete("/v1/me/family/membership", status_code=204)
async def leave_family(ctx: Ctx, who: CurrentUser):
    """A member gives up their seat."""
    await family.leave(ctx.pool, who)
    return Response(status_code=204)


@router.get("/v1/admin/billing/report", response_model=ReportOut)
async def billing_report(ctx: Ctx, who: CurrentUser,
                         month: Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", examples=["2026-11"])]):
    """MRR, churn and revenue by plan for one month (administrators only)."""
    if not who.is_admin:
        raise Forbidden("only administrators see the billing report")
    report = await reports.month_report(ctx.pool, month)
    return ReportOut(month=report.month, mrr_at=report.mrr_at, churn_rate=report.churn_rate,
                     subscribers_at_start=report.subscribers_at_start,
                     mrr=[MrrOut(plan=plan, currency=currency, amount=amount)
                          for (plan, currency), amount in report.mrr.items()],
                     revenue=[RevenueOut(plan=r.plan, currency=r.currency, revenue=r.revenue) for r in report.revenue])


@router.post("/v1/billing/stripe/webhook", response_model=WebhookOut)
async def stripe_webhook(request: Request, ctx: Ctx,
                         stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None):
    """Stripe's event deliveries: verified, recorded once, applied with their ledger entries in one transaction."""
    result = await subscriptions.handle_webhook(ctx.pool, ctx.settings, await request.body(), stripe_signature)
    return WebhookOut(result=result)


@router.get("/v1/artists/{artist_id}/statements", response_model=list[dict[str, Any]],
            responses={200: {"content": {"text/csv": {}}}})
async def artist_statements(artist_id: uuid.UUID, ctx: Ctx, who: CurrentUser,
                            format: Annotated[Literal["json", "csv"], Query()] = "json"):
    """The artist's monthly royalty statements (lines per track, minor units), for its owner; CSV with format=csv."""
    items = await royalties.statements(ctx.pool, owner_id=who.user_id, is_admin=who.is_admin, artist_id=artist_id)
    if format == "csv":
        return PlainTextResponse(royalties.statements_csv(items), media_type="text/csv",
                                 headers={"Content-Disposition": f'attachment; filename="statements-{artist_id}.csv"'})
    return items
