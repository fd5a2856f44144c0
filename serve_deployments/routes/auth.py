"""Registration, login (OAuth2 password flow), refresh-token rotation and logout."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from accounts import service as accounts
from accounts.model import Role
from serve_deployments.deps import ClientIp, Ctx, CurrentUser, feature
from serve_deployments.schemas import LogoutIn, RefreshIn, RegisterIn, TokenOut, UserOut
from verseflow.errors import Unauthorized

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserOut,
             dependencies=[feature("registration")])
async def register(body: RegisterIn, ctx: Ctx):
    """Create an account; the profile and welcome notification follow through the registration saga."""
    user = await accounts.register(
        ctx.pool, ctx.settings, email=body.email, password=body.password,
        display_name=body.display_name, role=Role(body.role),
    )
    return UserOut(id=user.id, email=user.email, display_name=user.display_name, role=user.role,
                   created_at=user.created_at)


@router.post("/token", response_model=TokenOut)
async def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], ctx: Ctx, ip: ClientIp):
    """OAuth2 password flow: ``username`` is the email."""
    if len(form.username) > 320 or len(form.password) > 256 or "\x00" in form.username:
        raise Unauthorized("incorrect email or password")  # no such account can exist
    pair = await accounts.login(ctx.pool, ctx.redis, ctx.settings, email=form.username,
                                password=form.password, client_ip=ip)
    return TokenOut(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.post("/refresh", response_model=TokenOut)
async def refresh(body: RefreshIn, ctx: Ctx):
    """Exchange a refresh token for a new pair; the old refresh token stops working."""
    pair = await accounts.refresh(ctx.pool, ctx.settings, refresh_token=body.refresh_token)
    return TokenOut(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(request: Request, ctx: Ctx, _: CurrentUser, body: LogoutIn | None = None) -> None:
    """Revoke this access token and, if given, the refresh token's whole login."""
    token = request.headers["authorization"].split(" ", 1)[1]
    claims = await accounts.authenticate_claims(ctx.redis, ctx.settings, token)
    await accounts.logout(ctx.pool, ctx.redis, ctx.settings, claims=claims,
                          refresh_token=body.refresh_token if body else None)
