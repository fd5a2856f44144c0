"""VerseFlow settings: one pydantic-settings class read from ``VERSEFLOW_*`` environment variables.

Every limit the platform enforces (body size, rate limits, page sizes, token lifetimes) lives here
with a sane default, so operators tune behaviour without touching code. ``database_url`` and
``redis_url`` left unset mean "embedded": ``verseflow up`` starts a private PostgreSQL and Redis
under ``var_dir`` and fills them in before anything else reads the settings.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from verseflow.scaling import ApiScaling, GatewayScaling, MediaScaling, ServeScaling


class Settings(BaseSettings):
    """All runtime configuration. Nested names use ``__`` (``VERSEFLOW_FEATURES__SEARCH=false``)."""

    model_config = SettingsConfigDict(env_prefix="VERSEFLOW_", env_nested_delimiter="__", extra="ignore")

    environment: str = "development"
    var_dir: Path = Path("var")

    # Data services. None means: start the embedded server (make up) under var_dir.
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "vf:"
    redis_max_connections: int = Field(50, ge=1, description="per process; callers beyond it wait")
    redis_pool_timeout_s: float = Field(10.0, gt=0)
    db_pool_min: int = Field(2, ge=1)
    db_pool_max: int = Field(10, ge=1)

    # HTTP.
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(1_048_576, ge=1024, description="JSON/form request bodies (uploads have their own)")
    page_size_default: int = Field(20, ge=1)
    page_size_max: int = Field(100, ge=1)
    trust_forwarded_for: bool = False

    # Auth.
    jwt_secret: SecretStr | None = None
    jwt_algorithm: str = "HS256"
    jwt_issuer: str = "verseflow"
    access_token_ttl_s: int = Field(900, ge=30)
    refresh_token_ttl_s: int = Field(30 * 24 * 3600, ge=60)
    password_min_length: int = Field(8, ge=6)
    login_attempts_per_account: int = Field(10, ge=1)
    login_attempts_per_ip: int = Field(50, ge=1)
    login_window_s: int = Field(300, ge=1)
    # The first administrators: accounts registering with one of these e-mails (comma-separated in
    # VERSEFLOW_ADMIN_EMAILS) are made admins. E-mail ownership is not verified, so whoever registers
    # a listed address first gets admin: README "The first administrator" says when that is safe.
    admin_emails: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), description="e-mails made admin at registration (unverified: see README)")

    # App passwords and the Subsonic API (accounts/app_passwords.py, subsonic/).
    app_passwords_max: int = Field(20, ge=1, description="app passwords one account may hold")
    subsonic_token_auth: bool = Field(True, description="accept t+s (md5 of an app password and a salt); "
                                                        "off: error 41, clients use apiKey or p")
    subsonic_password_auth: bool = Field(True, description="accept p (an app password in the URL); off: error 42")
    subsonic_list_max: int = Field(500, ge=1, description="largest page of search3, album lists, random songs")
    subsonic_cover_size_max: int = Field(1024, ge=16, description="largest generated cover, in pixels")
    subsonic_similar_seeds_max: int = Field(25, ge=1, description="tracks of an album or artist whose similar "
                                            "tracks getSimilarSongs merges (the most played first)")
    subsonic_now_playing_minutes: int = Field(10, ge=1, description="how long a started play that nothing "
                                              "followed stays in getNowPlaying")

    # Events.
    events_stream: str = "events"
    events_stream_maxlen: int = Field(1_000_000, ge=1000)
    relay_batch_size: int = Field(200, ge=1)
    relay_poll_interval_s: float = Field(1.0, gt=0)
    consumer_block_ms: int = Field(1000, ge=1)
    consumer_reclaim_idle_ms: int = Field(30_000, ge=100)
    consumer_max_deliveries: int = Field(5, ge=1)

    # --- Retention (verseflow/events/retention.py, accounts/retention.py; run by the event worker) ---
    # What is kept and for how long; older rows are deleted in small batches that skip locked rows.
    prune_interval_s: float = Field(600.0, gt=0, description="how often the event worker prunes")
    metrics_sample_interval_s: float = Field(
        5.0, gt=0, description="how often the event worker samples backlogs (outbox, consumer groups, "
                               "transcoding queue) into gauges; well inside the 20 s after which Ray's "
                               "agent drops a gauge nobody re-reported (2 x its 10 s export interval)")
    prune_batch_size: int = Field(1000, ge=1, description="rows one prune statement deletes at most")
    outbox_retention_s: int = Field(7 * 24 * 3600, ge=0, description="published outbox rows are kept this long "
                                                                      "after publication; unpublished ones always")
    outbox_retention_by_type_s: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: {"track.progress": 3600},
        description="event types kept for their own time after publication instead of outbox_retention_s")
    processed_events_retention_s: int = Field(
        7 * 24 * 3600, ge=3600, description="the deduplication window: how long a consumer group remembers that "
                                            "it handled an event; older redeliveries are dead-lettered")
    refresh_token_retention_s: int = Field(7 * 24 * 3600, ge=0, description="a login whose every refresh token "
                                                                             "expired or was revoked this long ago "
                                                                             "is deleted")
    qualified_plays_retention_months: int = Field(
        2, ge=1, description="months before the current one whose plays stay remembered as counted for royalties: "
                             "a late event of such a play (an offline player syncing) is never counted twice")
    # --- end of retention ---

    # Ray / Serve.
    ray_address: str | None = None
    ray_dashboard: bool = True
    ray_metrics_port: int = Field(8080, ge=1, le=65535)
    # Serve autoscaling per deployment (verseflow/scaling.py says why each default):
    # VERSEFLOW_API_SCALING__MAX_REPLICAS=2, VERSEFLOW_GATEWAY_SCALING__TARGET_ONGOING_REQUESTS=100...
    api_scaling: ApiScaling = Field(default_factory=ApiScaling)
    gateway_scaling: GatewayScaling = Field(default_factory=GatewayScaling)
    media_scaling: MediaScaling = Field(default_factory=MediaScaling)

    # Media (verseflow/storage.py, audio/).
    storage_backend: Literal["local", "s3"] = Field("local", description="where uploads and media live")
    web_dist_dir: Path = Field(Path(__file__).resolve().parents[1] / "web" / "dist",
                               description="the built web app (`npm run build` in web/) that the web deployment serves")
    storage_dir: Path | None = Field(None, description="local object store (with s3: its local cache); "
                                                       "default <var_dir>/media")
    s3_bucket: str = Field("verseflow-media", description="bucket of the s3 backend")
    s3_endpoint_url: str | None = Field(None, description="an S3-compatible service (MinIO, Ceph...); None: AWS")
    s3_region: str | None = None
    upload_max_bytes: int = Field(200 * 1024 * 1024, ge=1024, description="largest accepted upload")
    track_max_duration_s: float = Field(3600.0, gt=0, description="longest accepted track, judged on samples")
    upload_field_max_bytes: int = Field(16 * 1024, ge=256, description="each non-file field of a multipart upload")
    transcode_cpus: float = Field(1.0, gt=0, description="CPUs each transcoding job reserves: jobs queue beyond them")
    transcode_max_attempts: int = Field(3, ge=1, description="a job whose process dies is retried up to this")
    transcode_niceness: int = Field(10, ge=0, le=19, description="jobs run at this nice level under the API")
    transcode_timbre: bool = Field(False, description="compute the torchaudio timbre features (MFCC, chroma) in each "
                                                      "job; off: +1.2 s CPU and +475 MB per job for importing "
                                                      "torch, and no cold-start gain measured (bench/README.md)")
    transcode_torch_threads: int = Field(1, ge=1, le=64, description="torch's threads for a job's timbre features: "
                                                                     "the ladder lane takes the other core")
    media_url_ttl_s: int = Field(900, ge=10, description="signed media URLs live this long plus the track's length")
    media_base_url: str = Field("", description="prefix of signed media URLs (a CDN); empty means same origin")
    identify_min_clip_s: float = Field(5.0, gt=0, description="shortest clip /v1/fingerprint/identify accepts")
    identify_max_clip_s: float = Field(60.0, gt=0, description="longest clip /v1/fingerprint/identify analyses")
    identify_clip_tolerance_s: float = Field(0.1, ge=0, description="clips this much shorter than the shortest or "
                                                                    "longer than the longest still pass: codec delay, "
                                                                    "padding and frame rounding")
    identify_max_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="largest identify upload")
    user_lookup_min_chars: int = Field(2, ge=1, le=20, description="shortest text GET /v1/users?q= looks up "
                                                                  "(one letter would list half the users)")
    user_lookup_limit: int = Field(10, ge=1, le=100, description="most people one user lookup returns")
    user_lookup_per_minute: int = Field(120, ge=1, description="user lookups per user per minute (a type-ahead "
                                                                "asks once per pause in typing)")
    identify_per_minute: int = Field(30, ge=1, description="identify requests per user per minute")
    fingerprint_min_matches: int = Field(16, ge=5, description="triplet hashes agreeing on an offset for a match "
                                                                "(audio/fingerprint.py: TRIPLET_MIN_MATCHES)")
    fingerprint_shards: int = Field(2, ge=1, description="FingerprintShard actors holding the landmark index "
                                                          "(tracks are hashed onto them)")
    fingerprint_max_postings: int = Field(0, ge=0, description="a hash with more postings than this in the "
                                                               "catalogue is skipped by queries (too common to "
                                                               "tell tracks apart); 0: no cap")

    # Resumable uploads (tus 1.0 at /v1/uploads, audio/resumable.py); size and content rules are the uploads' above.
    resumable_expiry_s: int = Field(24 * 3600, ge=60, description="an upload without new bytes this long expires; "
                                                                   "its bytes are removed")
    resumable_lease_s: float = Field(60.0, ge=1, description="a PATCH holds its upload this long past its last "
                                                             "bytes; a silent connection frees it after this")
    resumable_max_open: int = Field(10, ge=1, description="unfinished resumable uploads per user")
    resumable_sweep_interval_s: float = Field(300.0, gt=0, description="how often expired uploads are removed")

    # Recommendations (ml/): signals, the collaborative model, serving.
    rec_skip_seconds: float = Field(30.0, ge=0, description="a play that ends before this many seconds ...")
    rec_skip_fraction: float = Field(0.25, ge=0, le=1, description="... or this share of the track (whichever comes "
                                                                   "first) is a skip, a negative signal")
    rec_complete_weight: float = Field(1.0, gt=0, description="evidence of a completed play")
    rec_partial_weight: float = Field(0.6, ge=0, description="evidence of a play heard past the skip threshold but "
                                                             "not to the end, times the share heard")
    rec_skip_weight: float = Field(0.5, ge=0, description="negative evidence of a skip")
    rec_save_weight: float = Field(2.0, ge=0, description="evidence of a track in the library (not decayed)")
    rec_playlist_add_weight: float = Field(1.5, ge=0, description="evidence of adding a track to a playlist")
    rec_follow_weight: float = Field(0.5, ge=0, description="evidence for each track of a playlist one follows")
    rec_follow_max_tracks: int = Field(500, ge=1, description="tracks of a followed playlist that get evidence")
    rec_half_life_days: float = Field(60.0, gt=0, description="plays, skips and playlist adds lose half their "
                                                              "weight in this many days")
    rec_alpha: float = Field(10.0, gt=0, description="ALS confidence per unit of evidence (Hu, Koren, Volinsky 2008)")
    rec_factors: int = Field(64, ge=2, le=1024, description="ALS latent factors")
    rec_iterations: int = Field(15, ge=1, le=200, description="ALS iterations")
    rec_regularization: float = Field(50.0, ge=0, description="ALS L2 regularization (chosen on validation splits "
                                                                "of ML-100K and ml-latest-small: bench/README.md)")
    rec_train_cpus: float = Field(1.0, gt=0, description="CPUs a training run reserves where nodes offer no batch "
                                                        "slots (actors/rec_training.py)")
    rec_train_threads: int = Field(0, ge=0, description="threads of one ALS fit (0: every core of its node)")
    rec_seed: int = Field(42, description="random state of the ALS initialisation: a rerun on the same data "
                                          "gives the same model")
    rec_ease_max_items: int = Field(50_000, ge=0, description="catalogues of up to this many played tracks get "
                                    "low-rank EASE beside ALS (one truncated SVD of the interactions, items × "
                                    "rank floats more per vector); larger ones are served by ALS alone (0: never)")
    rec_ease_rank: int = Field(384, ge=0, le=1024, description="directions of EASE kept (the served vectors "
                                                               "grow by this many floats; 0: no EASE)")
    rec_ease_regularization: float = Field(1000.0, gt=0, description="EASE's L2 penalty λ (Steck 2019; chosen on "
                                                                      "validation splits: bench/README.md)")
    rec_ease_als_weight: float = Field(0.3, gt=0, description="weight of the ALS score against EASE's in the served "
                                                              "inner product (chosen on validation splits: "
                                                              "bench/README.md)")
    rec_train_interval_s: float = Field(24 * 3600.0, ge=0, description="the event worker starts a training this "
                                                                       "often (0: only on demand)")
    rec_model_refresh_s: float = Field(30.0, gt=0, description="how often a serving process looks for a newer "
                                                               "model version")
    rec_limit_max: int = Field(100, ge=1, description="largest ?limit of recommendations and similar tracks")
    rec_open_play_grace_s: float = Field(3600.0, ge=0, description="a play neither completed nor followed by "
                                                                   "another is ended this long after the track's "
                                                                   "length (by the event worker's prune)")
    rec_trending_min_listeners: int = Field(3, ge=1, description="unique listeners a track needs in the window "
                                                                 "to trend")
    rec_listens_retention_days: int = Field(30, ge=14, description="hourly unique listeners kept for trending "
                                                                   "(at least two 7-day windows)")
    rec_popular_window_days: float = Field(30.0, gt=0, description="popular picks count the evidence of this "
                                                                   "many days")
    rec_blend_evidence: float = Field(5.0, ge=0, description="listeners at which an item's served vector is half "
                                                             "collaborative, half predicted from its sound (w = "
                                                             "n / (n + this); 0: collaborative once played)")
    rec_content_model: Literal["network", "ridge"] = Field(
        "network", description="what maps a track's sound into the ALS space at each training: the small torch "
                               "network (ml/content_network.py) or the linear ridge baseline (ml/content.py)")
    rec_content_regularization: float = Field(30.0, ge=0, description="L2 penalty of the ridge baseline "
                                                                      "(audio features -> ALS factors)")
    rec_content_hidden: int = Field(128, ge=1, le=4096, description="units of each hidden layer of the content "
                                                                    "network")
    rec_content_layers: int = Field(1, ge=1, le=3, description="hidden layers of the content network")
    rec_content_weight_decay: float = Field(0.05, ge=0, description="the content network's decoupled weight decay "
                                                                   "(AdamW)")
    rec_content_learning_rate: float = Field(3e-3, gt=0, description="the content network's AdamW learning rate")
    rec_content_batch: int = Field(64, ge=1, description="tracks per step of the content network's training")
    rec_content_max_epochs: int = Field(400, ge=1, description="most epochs of the content network's training")
    rec_content_patience: int = Field(30, ge=1, description="epochs without a better held-out error before the "
                                                            "content network's training stops")
    rec_content_validation_share: float = Field(0.2, gt=0, lt=1, description="share of the played tracks held "
                                                                             "out to choose the epoch count; the "
                                                                             "network is then refitted on all")
    rec_content_threads: int = Field(1, ge=1, description="torch threads of the content network's training (the "
                                                          "training task holds one CPU)")
    rec_content_min_items: int = Field(8, ge=2, description="played tracks with an audio embedding needed before "
                                                            "a content model is fitted")
    rec_breakout_baseline_windows: int = Field(3, ge=1, le=12, description="earlier windows whose mean unique "
                                                                       "listeners is an artist's baseline")
    rec_breakout_min_listeners: int = Field(5, ge=1, description="unique listeners an artist needs in the "
                                                                 "window to break out")
    rec_radio_candidates: int = Field(200, ge=10, le=5000, description="neighbours of the seed a radio queue "
                                                                       "is chosen from")
    rec_radio_min_similarity: float = Field(0.3, ge=-1, le=1, description="cosine similarity to the seed below "
                                                                          "which a track is outside the radio's "
                                                                          "neighbourhood")
    rec_radio_tempo_weight: float = Field(0.5, ge=0, description="penalty per octave of tempo change between "
                                                                 "consecutive radio tracks")
    rec_radio_loudness_weight: float = Field(0.02, ge=0, description="penalty per LU of loudness change between "
                                                                     "consecutive radio tracks")
    rec_search_threads: int = Field(1, ge=1, le=64, description="OpenMP threads of one faiss query (queries "
                                                               "and shards already run side by side)")
    rec_index: Literal["shards", "local"] = Field("shards", description="where serving searches item vectors: "
                                                                     "the RecShard actors, or one index in each "
                                                                     "API replica (faster while the catalogue fits "
                                                                     "a replica: bench/README.md)")
    rec_shards: int = Field(2, ge=1, le=256, description="RecShard actors the item vectors are hashed onto "
                                                          "(serving uses them whenever Ray is running). Every "
                                                          "query visits every shard: more shards than cores "
                                                          "cost latency (bench/README.md, Recommendations), so "
                                                          "size it by memory and nodes")
    rec_shard_hnsw_min_items: int = Field(300_000, ge=1, description="a shard holding at least this many items "
                                                                     "builds an HNSW index; smaller ones search "
                                                                     "exactly")
    rec_hnsw_ef_search: int = Field(200, ge=16, le=10_000, description="HNSW search breadth (efSearch; at least "
                                                                      "2k): measured recall@10 0.90 at 64, 0.99 at "
                                                                      "160 on 20k random 64-d vectors")
    rec_shard_timeout_s: float = Field(2.0, gt=0, description="a shard that has not answered a query in this "
                                                              "long is left out of the answer (which says so)")
    rec_shard_calls_in_flight: int = Field(2, ge=1, le=64, description="search calls a process keeps under way "
                                                                      "to each shard; queries arriving meanwhile "
                                                                      "wait and go together in the next call")
    rec_shard_batch_max: int = Field(64, ge=1, le=4096, description="queries at most in one search call to a "
                                                                    "shard")
    rec_shard_versions_kept: int = Field(2, ge=1, le=8, description="model versions a shard keeps loaded, so "
                                                                    "requests on the previous version still "
                                                                    "find it during a swap")
    rec_swap_min_recall: float = Field(0.95, ge=0, le=1, description="recall@10 of the shards against exact "
                                                                     "search a new version must reach before "
                                                                     "it is swapped in")
    rec_swap_check_queries: int = Field(32, ge=1, description="user vectors of the new version used as the "
                                                              "fixed query set of that check")

    # Realtime (rooms/, actors/room_host.py, actors/edge.py): hosts, limits, timeouts.
    room_hosts: int = Field(2, ge=1, description="RoomHost actors in the cluster (rooms are hashed onto them)")
    session_hosts: int = Field(1, ge=1, description="SessionHost actors (user sessions are hashed onto them)")
    edge_port: int = Field(8765, ge=0, le=65535, description="the realtime edge's WebSocket port; 0 disables edges")
    edge_host: str = "127.0.0.1"
    edge_listen_backlog: int = Field(2048, ge=1, description="connections waiting for the edge to accept them: "
                                                             "a reconnect storm must fit (capped by somaxconn)")
    edge_public_url: str | None = Field(None, description="ws(s):// URL clients use for the edge (behind a proxy)")
    ws_auth_timeout_s: float = Field(5.0, gt=0, description="time to send the first `auth` message")
    ws_idle_timeout_s: float = Field(60.0, gt=0, description="close a socket that sent nothing for this long")
    ws_max_message_bytes: int = Field(64 * 1024, ge=1024)
    ws_messages_per_s: float = Field(20.0, gt=0, description="per connection, sustained")
    ws_message_burst: int = Field(40, ge=1, description="per connection, bucket size")
    yjs_messages_per_s: float = Field(200.0, gt=0)
    yjs_message_burst: int = Field(400, ge=1)
    ws_outbound_queue: int = Field(1000, ge=1, description="messages waiting for one slow socket before 4408")
    ws_send_timeout_s: float = Field(10.0, gt=0, description="one blocked write this long closes with 4408")
    chat_max_chars: int = Field(2000, ge=1)
    room_history: int = Field(500, ge=1, description="recent messages a room keeps in memory for resume")
    room_write_batch_max: int = Field(500, ge=1, description="messages a room persists in one statement at most")
    room_chat_page_max: int = Field(200, ge=1, description="chat messages one history page returns at most")
    room_backlog_max: int = Field(1000, ge=1, description="messages a rejoin may replay before a 'reset'")
    room_members_in_joined: int = Field(50, ge=1, description="members listed in `joined` (the count is exact)")
    room_idle_s: float = Field(300.0, gt=0, description="a room with nobody online is passivated after this")
    presence_flush_s: float = Field(0.05, gt=0, description="presence changes are batched for this long")
    presence_fanout_per_s: int = Field(2000, ge=1, description="presence deliveries a room sends per second at most: "
                                                               "a large room batches its changes for longer")
    yjs_compact_every: int = Field(200, ge=2, description="squash a document's updates after this many")

    # Billing (billing/, stripelocal/). No secret key means: `make up` starts the local Stripe server
    # (stripelocal) and fills in the key, API base and webhook secret, as it does for PostgreSQL.
    stripe_secret_key: SecretStr | None = Field(None, description="sk_test_/sk_live_ key; unset: the local server")
    stripe_api_base: str | None = Field(None, description="Stripe API base URL; None: Stripe's own (api.stripe.com)")
    stripe_publishable_key: str | None = Field(None, pattern=r"^pk_(test|live)_[A-Za-z0-9_]{1,200}$",
                                               description="pk_test_/pk_live_ key for Stripe.js: set, the subscription "
                                                           "page collects cards with Stripe's Payment Element")
    stripe_webhook_secret: SecretStr | None = Field(None, description="whsec_ signing secret of our webhook endpoint")
    stripe_webhook_tolerance_s: int = Field(300, ge=1, description="oldest Stripe-Signature timestamp accepted")
    stripe_local_port: int = Field(12111, ge=1, le=65535, description="port of the embedded local Stripe server")
    stripe_max_network_retries: int = Field(2, ge=0, description="SDK retries of a failed call (same idempotency key)")
    billing_crash_at: str = Field("", pattern=r"^((before|after)_commit(:[a-z_.]+)?)?$",
                                  description="fault injection for tests only: the webhook handler's process "
                                              "exits at this step (optionally only for one event type)")
    billing_webhook_refetch: bool = Field(False, description="re-read every subscription and invoice a webhook "
                                                             "names from Stripe's API instead of applying the "
                                                             "event's own object when it is newer (the behaviour "
                                                             "before issue 9's throughput work; the bench baseline)")
    billing_stripe_clock_margin_s: int = Field(10, ge=0, description="how far Stripe's clock (event `created`) and "
                                                                     "ours may disagree: events created this close to "
                                                                     "our own read of a subscription re-read it")
    royalty_model: Literal["pro_rata", "user_centric", "artist_centric"] = Field(
        "pro_rata", description="how the royalty pool is split (billing/royalties.py); only its run is booked")
    royalty_pool_share_bp: int = Field(7000, ge=0, le=10_000, description="share of a month's net subscription "
                                                                          "revenue paid to artists, basis points")
    royalty_query_timeout_s: float = Field(600.0, gt=0, description="longest the month's qualifying-play query "
                                                                    "may run (the pool's command timeout is 30 s)")
    royalty_work_mem_mb: int = Field(64, ge=4, le=4096, description="PostgreSQL work_mem of the royalty run's "
                                                                    "transaction: its per-track and per-listener "
                                                                    "aggregates stay in memory (the server's "
                                                                    "default, 4 MB, spills them to disk)")
    billing_currency: str = Field("eur", pattern=r"^[a-z]{3}$", description="currency of the plans' prices")
    billing_premium_amount: int = Field(999, ge=50, description="premium's monthly price in minor units")
    billing_family_amount: int = Field(1599, ge=50, description="family's monthly price in minor units")
    billing_past_due_grace_s: int = Field(3 * 86400, ge=0, description="a past_due subscription keeps its plan "
                                                                       "this long after the failed payment")
    family_members_max: int = Field(6, ge=1, le=50, description="accounts sharing one family plan, its owner "
                                                                "included")
    family_invite_ttl_s: int = Field(7 * 86400, ge=60, description="how long a family invitation code "
                                                                   "can be redeemed")

    # Feature flags: a flag missing here is off.
    features: dict[str, bool] = Field(default_factory=lambda: {"search": True, "registration": True})

    @field_validator("admin_emails", mode="before")
    @classmethod
    def _split_emails(cls, value: object) -> object:
        """``a@x.org, b@y.org`` from the environment; e-mails compare case-insensitively, as logins do."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple | set | frozenset):
            return frozenset(e.strip().lower() for e in value if e.strip())
        return value

    def serve_scaling(self) -> dict[str, ServeScaling]:
        """Deployment name -> its autoscaling settings (the deployments that autoscale)."""
        return {"api": self.api_scaling, "gateway": self.gateway_scaling, "media": self.media_scaling}

    def media_dir(self) -> Path:
        return self.storage_dir or self.var_dir / "media"

    def feature(self, name: str) -> bool:
        return self.features.get(name, False)

    def require_urls(self) -> tuple[str, str]:
        """The database and Redis URLs; fails loudly when the embedded services were not started."""
        if not self.database_url or not self.redis_url:
            raise RuntimeError("VERSEFLOW_DATABASE_URL and VERSEFLOW_REDIS_URL must be set (or use `verseflow up`)")
        return self.database_url, self.redis_url

    def secret(self) -> str:
        if self.jwt_secret is None:
            raise RuntimeError("VERSEFLOW_JWT_SECRET is not set (verseflow up generates one under var/)")
        return self.jwt_secret.get_secret_value()


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
