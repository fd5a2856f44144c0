"""``/v1/billing/...``, ``/v1/me/subscription`` and artists' statements: subscribing through Stripe,
Stripe's webhooks, royalty statements.

Thin: every rule is in ``billing/subscriptions.py``. The webhook route reads the raw body, because
Stripe's signature covers the exact bytes sent.
"""

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from billing import royalties, subscriptions
from serve_deployments.deps import Ctx, CurrentUser

router = APIRouter(tags=["billing"])

PaidPlan = Literal["premium", "family"]


class SubscribeIn(BaseModel):
    plan: PaidPlan
    payment_method: str | None = Field(None, pattern=r"^pm_[A-Za-z0-9_]{1,100}$",
                                       description="a Stripe PaymentMethod id (Stripe.js), or a test one "
                                                   "such as pm_card_visa in test mode")


class ChangePlanIn(BaseModel):
    plan: PaidPlan


class WebhookOut(BaseModel):
    received: bool = True
    result: Literal["applied", "duplicate", "ignored"]


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
