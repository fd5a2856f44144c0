"""The caller's own account (``/v1/me``), public profiles and role grants."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from accounts import lookup
from accounts import service as accounts
from accounts.model import Profile, Role, User
from serve_deployments.deps import Ctx, CurrentUser, OptionalUser
from serve_deployments.schemas import (
    MeOut,
    ProfileOut,
    ProfileUpdateIn,
    PublicUserOut,
    RoleIn,
    UserOut,
    UserRefOut,
)
from verseflow import ratelimit
from verseflow.errors import InvalidInput

router = APIRouter(prefix="/v1", tags=["users"])


def _me(user: User, profile: Profile | None) -> MeOut:
    return MeOut(id=user.id, email=user.email, display_name=user.display_name, role=user.role,
                 created_at=user.created_at, profile=ProfileOut(**vars(profile)) if profile else None)


@router.get("/me", response_model=MeOut)
async def read_me(ctx: Ctx, who: CurrentUser):
    return _me(*await accounts.get_user(ctx.pool, who.user_id))


@router.patch("/me", response_model=MeOut)
async def update_me(body: ProfileUpdateIn, ctx: Ctx, who: CurrentUser):
    changes = body.model_dump(exclude_unset=True, mode="json")
    display_name = changes.pop("display_name", None)
    user, profile = await accounts.update_profile(ctx.pool, who.user_id, display_name=display_name,
                                                  profile_fields=changes)
    return _me(user, profile)


@router.get("/users", response_model=list[UserRefOut])
async def find_users(
    ctx: Ctx,
    who: CurrentUser,
    q: Annotated[str, Query(min_length=1, max_length=100,
                            description="The start of a display name, or of a word in it (case-insensitive)")],
    limit: Annotated[int | None, Query(ge=1, le=100, description="At most this many (capped by the server)")] = None,
):
    """People by name, for pickers such as a playlist's collaborators: ids and display names only.

    Signed-in callers only, rate-limited per caller, a few letters at least: a directory, not a dump."""
    settings = ctx.settings
    text = " ".join(q.split())
    if len(text) < settings.user_lookup_min_chars:
        raise InvalidInput(f"type at least {settings.user_lookup_min_chars} characters of the name")
    await ratelimit.hit(ctx.redis, f"{settings.redis_prefix}user-lookup:{who.user_id}",
                        limit=settings.user_lookup_per_minute, window_s=60)
    found = await lookup.find_users(ctx.pool, text, limit=min(limit or settings.user_lookup_limit,
                                                              settings.user_lookup_limit))
    return [UserRefOut(id=u.id, display_name=u.display_name) for u in found]


@router.get("/users/{user_id}", response_model=PublicUserOut)
async def read_user(user_id: uuid.UUID, ctx: Ctx, _: OptionalUser):
    """A public profile: no email, nothing private."""
    user, profile = await accounts.get_user(ctx.pool, user_id)
    return PublicUserOut(id=user.id, display_name=user.display_name, role=user.role,
                         profile=ProfileOut(**vars(profile)) if profile else None)


@router.put("/users/{user_id}/role", response_model=UserOut)
async def set_role(user_id: uuid.UUID, body: RoleIn, ctx: Ctx, who: CurrentUser):
    """Administrators grant roles."""
    user = await accounts.set_role(ctx.pool, ctx.redis, ctx.settings, who, user_id, Role(body.role))
    return UserOut(id=user.id, email=user.email, display_name=user.display_name, role=user.role,
                   created_at=user.created_at)
