"""``/v1/me/app-passwords``: secrets for Subsonic player apps (created, listed, revoked by their owner)."""

import uuid

from fastapi import APIRouter, Response, status

from accounts import app_passwords
from accounts import service as accounts
from serve_deployments.deps import Ctx, CurrentUser
from serve_deployments.schemas import AppPasswordCreatedOut, AppPasswordIn, AppPasswordOut

router = APIRouter(prefix="/v1/me/app-passwords", tags=["users"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AppPasswordCreatedOut)
async def create_app_password(body: AppPasswordIn, ctx: Ctx, who: CurrentUser):
    """A new app password, returned once (only an encrypted copy is kept)."""
    created = await app_passwords.create(ctx.pool, ctx.settings, who, name=body.name)
    user, _ = await accounts.get_user(ctx.pool, who.user_id)
    return AppPasswordCreatedOut(**vars(created.app_password), password=created.password, username=user.email)


@router.get("", response_model=list[AppPasswordOut])
async def list_app_passwords(ctx: Ctx, who: CurrentUser):
    """Names and dates only: the secrets are never shown again."""
    return [AppPasswordOut(**vars(a)) for a in await app_passwords.list_for(ctx.pool, who)]


@router.delete("/{app_password_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def revoke_app_password(app_password_id: uuid.UUID, ctx: Ctx, who: CurrentUser) -> None:
    await app_passwords.revoke(ctx.pool, who, app_password_id)
