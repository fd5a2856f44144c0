"""The caller's own account (``/v1/me``), public profiles and role grants."""

import uuid

from fastapi import APIRouter

from accounts import service as accounts
from accounts.model import Profile, Role, User
from serve_deployments.deps import Ctx, CurrentUser, OptionalUser
from serve_deployments.schemas import MeOut, ProfileOut, ProfileUpdateIn, PublicUserOut, RoleIn, UserOut

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
