"""Request and response models: the API's contract, validated by pydantic at the edge.

Request models forbid unknown fields, bound every string and refuse NUL characters (PostgreSQL text
cannot hold them), so bad input is a 4xx before any domain code runs. Response models document the
shapes in OpenAPI.

PATCH bodies (``*UpdateIn``) are dumped with ``exclude_unset``: a field left out stays unchanged.
Fields whose column is NOT NULL are typed without ``| None``, so their ``None`` default only marks
"left out" and an explicit ``null`` is a 422; fields with ``| None`` clear their column with it.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
ShortText = Annotated[str, StringConstraints(max_length=2000)]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Position = Annotated[int, Field(ge=0, le=1_000_000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        return value


# --- accounts -------------------------------------------------------------------------------

class RegisterIn(Strict):
    email: EmailStr
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    display_name: DisplayName
    role: Literal["listener", "artist"] = "listener"


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    display_name: str
    role: str
    created_at: datetime


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class RefreshIn(Strict):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class LogoutIn(Strict):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None


class ProfileOut(BaseModel):
    bio: str = ""
    avatar_url: str | None = None
    location: str | None = None
    website: str | None = None


class MeOut(UserOut):
    profile: ProfileOut | None


class UserRefOut(BaseModel):
    """Who someone is in a picker: never more than a public profile shows."""

    id: uuid.UUID
    display_name: str


class PublicUserOut(BaseModel):
    id: uuid.UUID
    display_name: str
    role: str
    profile: ProfileOut | None


class ProfileUpdateIn(Strict):
    display_name: DisplayName = None
    bio: ShortText = None
    avatar_url: AnyHttpUrl | None = None
    location: Annotated[str, StringConstraints(max_length=200)] | None = None
    website: AnyHttpUrl | None = None


class RoleIn(Strict):
    role: Literal["listener", "artist", "admin"]


# --- catalog --------------------------------------------------------------------------------

class ArtistIn(Strict):
    name: Name
    bio: Annotated[str, StringConstraints(max_length=5000)] = ""


class ArtistUpdateIn(Strict):
    name: Name = None
    bio: Annotated[str, StringConstraints(max_length=5000)] = None


class ArtistOut(BaseModel):
    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    bio: str
    created_at: datetime


class AlbumIn(Strict):
    title: Title
    artist_id: uuid.UUID
    release_date: date | None = None


class AlbumUpdateIn(Strict):
    title: Title = None
    release_date: date | None = None


class TrackIn(Strict):
    title: Title
    artist_id: uuid.UUID
    album_id: uuid.UUID | None = None
    genre: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    duration_s: Annotated[float, Field(ge=0, le=86_400)] | None = None


class TrackUpdateIn(Strict):
    title: Title = None
    album_id: uuid.UUID | None = None
    genre: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    duration_s: Annotated[float, Field(ge=0, le=86_400)] | None = None


class TrackOut(BaseModel):
    id: uuid.UUID
    title: str
    artist_id: uuid.UUID
    album_id: uuid.UUID | None
    genre: str | None
    duration_s: float | None
    status: str
    created_at: datetime
    artist_name: str | None = None
    album_title: str | None = None


class AlbumOut(BaseModel):
    id: uuid.UUID
    artist_id: uuid.UUID
    title: str
    release_date: date | None
    created_at: datetime
    tracks: list[TrackOut] = []


class CreatedOut(BaseModel):
    id: uuid.UUID


# --- playlists ------------------------------------------------------------------------------

class PlaylistIn(Strict):
    name: Name
    public: bool = False
    description: ShortText = ""


class PlaylistUpdateIn(Strict):
    name: Name = None
    public: bool = None
    description: ShortText = None


class PlaylistTrackIn(Strict):
    track_id: uuid.UUID
    position: Position | None = None


class PlaylistMoveIn(Strict):
    position: Position


class PlaylistEntryOut(BaseModel):
    entry_id: uuid.UUID
    position: int
    id: uuid.UUID
    title: str
    artist_id: uuid.UUID
    artist_name: str
    duration_s: float | None
    added_by: uuid.UUID | None
    added_at: datetime


class PlaylistOut(BaseModel):
    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    description: str
    public: bool
    created_at: datetime
    updated_at: datetime
    tracks: list[PlaylistEntryOut]
    collaborators: list[uuid.UUID]
    followers: int


class PlaylistSummaryOut(BaseModel):
    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    public: bool
    updated_at: datetime
    owned: bool


class EntryOut(BaseModel):
    entry_id: uuid.UUID
    position: int
    track_id: uuid.UUID | None = None


# --- rooms ----------------------------------------------------------------------------------

class RoomIn(Strict):
    name: Name
    visibility: Literal["public", "private"] = "public"


class RoomMemberIn(Strict):
    role: Literal["collaborator", "listener"]


class RoomMemberOut(BaseModel):
    user_id: uuid.UUID
    role: str
    display_name: str | None = None


class OnlineOut(BaseModel):
    user: uuid.UUID
    role: str
    devices: int


class RoomOut(BaseModel):
    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    visibility: str
    role: str
    created_at: datetime
    members: list[RoomMemberOut] = []
    online: list[OnlineOut] = []


class ChatMessageOut(BaseModel):
    """A chat message as its members received it (``from`` is the sender's user id)."""

    model_config = ConfigDict(populate_by_name=True)

    seq: int
    sender: uuid.UUID | None = Field(None, alias="from")
    text: str
    ts: int
    ref: str | None = None


class ChatPageOut(BaseModel):
    """A page of a room's chat, oldest first; ``older`` is the ``before`` for the page before it (None: none)."""

    items: list[ChatMessageOut]
    older: int | None


class RoomRoleOut(BaseModel):
    room_id: uuid.UUID
    user_id: uuid.UUID
    role: str


class RealtimeOut(BaseModel):
    """Where to open WebSockets: ``edge`` (recommended, scales) or ``serve`` (same port as the API)."""

    serve: str
    edge: str | None
    edges: list[str]
    documents: str


# --- audio ----------------------------------------------------------------------------------

class UploadIn(Strict):
    """The text fields of a multipart upload (``file`` carries the audio)."""

    title: Title
    artist_id: uuid.UUID
    album_id: uuid.UUID | None = None
    genre: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None


class UploadOut(BaseModel):
    id: uuid.UUID
    status: Literal["processing"]
    bytes: int
    sha256: str
    source: dict[str, object]


class MatchOut(BaseModel):
    track_id: uuid.UUID
    title: str
    artist_name: str
    offset_s: float
    score: float
    speed: float


class JobOut(BaseModel):
    state: str
    attempts: int
    stage: str | None
    progress: float
    timings: dict[str, float]
    updated_at: datetime


class StreamsOut(BaseModel):
    tier: str
    rungs: list[str]
    expires_at: int
    hls: str
    dash: str
    mp3: dict[str, str]
    waveform: str


class TrackDetailOut(TrackOut):
    """A track with what the audio pipeline found and where to stream it (signed, short-lived)."""

    analysis: dict[str, object] | None = None
    error: dict[str, object] | None = None
    matches: list[MatchOut] = []
    job: JobOut | None = None
    streams: StreamsOut | None = None


class IdentifyOut(BaseModel):
    match: MatchOut | None
    candidates: list[MatchOut]


class PlayIn(Strict):
    track_id: uuid.UUID
    play_id: uuid.UUID
    event: Literal["start", "progress", "complete"]
    position_ms: Annotated[int, Field(ge=0, le=86_400_000)]
    rung: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,20}$")] | None = None


class PlayOut(BaseModel):
    recorded: bool


def validated(model: type[BaseModel], data: Any) -> Any:  # noqa: ANN401 - an instance of ``model``
    """``data`` (JSON bytes or a dict) as ``model``, or the 422 FastAPI gives a body that does not validate;
    for bodies read by hand (multipart fields, tus metadata)."""
    try:
        if isinstance(data, bytes):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None


class AppPasswordIn(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class AppPasswordOut(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None


class AppPasswordCreatedOut(AppPasswordOut):
    password: str = Field(description="shown once: use it as the Subsonic password (p, t+s) or as the apiKey")
    username: str = Field(description="the Subsonic username: the account's e-mail")


class RecTrackOut(BaseModel):
    id: uuid.UUID
    title: str
    artist_id: uuid.UUID
    artist_name: str
    album_id: uuid.UUID | None
    genre: str | None
    duration_s: float | None


class SavedTrackOut(RecTrackOut):
    saved_at: datetime


class SavedOut(BaseModel):
    saved: bool
    changed: bool


class RecItemOut(BaseModel):
    track: RecTrackOut
    score: float
    reason: str


class ShardsOut(BaseModel):
    """How many index shards took part: fewer than all while a shard restarts (the rest still answer)."""

    total: int
    answered: int
    complete: bool


class RecommendationsOut(BaseModel):
    model_version: int | None
    items: list[RecItemOut]
    shards: ShardsOut | None = None


class SimilarOut(RecommendationsOut):
    seed: uuid.UUID


class BreakoutArtistOut(BaseModel):
    id: uuid.UUID
    name: str


class BreakoutOut(BaseModel):
    artist: BreakoutArtistOut
    listeners: int
    baseline_listeners: float
    windows: list[int] = Field(description="unique listeners of each window, oldest first, the current last")
    score: float


class BreakoutsOut(BaseModel):
    window: Literal["24h", "7d"]
    items: list[BreakoutOut]


class TrendingItemOut(BaseModel):
    track: RecTrackOut
    listeners: int
    previous_listeners: int
    score: float


class TrendingOut(BaseModel):
    window: Literal["24h", "7d"]
    genre: str | None
    items: list[TrendingItemOut]


class TrainingOut(BaseModel):
    version: int
    state: Literal["training", "ready", "failed"]


class ModelVersionOut(TrainingOut):
    trigger: str
    stats: dict[str, Any] | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
