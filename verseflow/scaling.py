"""Serve autoscaling per deployment: the settings behind each ``autoscaling_config``.

Serve scales a deployment on *ongoing requests per replica*: above ``target_ongoing_requests`` for
``upscale_delay_s`` it adds replicas, below it for ``downscale_delay_s`` it removes them, and no
replica ever holds more than ``max_ongoing_requests`` (the rest queue in the proxy). What one
ongoing request costs differs per deployment, so each has its own defaults, measured on the 2-core
development machine with ``bench/autoscale.py``, one replica each (figures and commands in
bench/README.md, "Autoscaling"):

- ``api``: a request lasts milliseconds; a replica's throughput stops growing at a few requests in
  flight, and every request beyond that only waits. So the target is that knee, and the limit a
  small multiple of it (a burst queues in the replica, not at the proxy).
- ``gateway``: a WebSocket is one ongoing request *for its whole life*: the count is sockets, not
  load. The target is the sockets one replica keeps within the realtime latency promise at a
  typical chat rate; the limit must stay far above it (a socket beyond it is never admitted until
  another closes). Scaling down stops a replica whose sockets are cut after its graceful shutdown
  (clients reconnect and resume), so the gateway waits much longer before scaling down.
- ``media``: file reads with Range; many in flight per replica, limited by disk, not CPU.

Overridden per field from the environment: ``VERSEFLOW_API_SCALING__MAX_REPLICAS=4``.
``cluster/serve_config.yaml`` carries the same defaults for ``serve deploy`` (a test keeps them equal).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator


class ServeScaling(BaseModel):
    """One deployment's request limit and Serve ``autoscaling_config``."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0, description="per replica: above it Serve adds replicas")
    max_ongoing_requests: int = Field(16, ge=1, description="per replica: beyond it requests queue in the proxy")
    max_queued_requests: int = Field(-1, ge=-1, description="per proxy: beyond it a request is refused at once "
                                                            "(HTTP 503); -1: no bound")
    upscale_delay_s: float = Field(10.0, ge=0, description="load above target this long before a replica is added")
    downscale_delay_s: float = Field(300.0, ge=0, description="load below target this long before one is removed")
    metrics_interval_s: float = Field(10.0, gt=0, description="how often replicas and proxies report their load")
    look_back_period_s: float = Field(30.0, gt=0, description="the window their load is averaged over")

    @model_validator(mode="after")
    def _consistent(self) -> ServeScaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be at least min_replicas")
        if self.max_ongoing_requests < self.target_ongoing_requests:
            raise ValueError("max_ongoing_requests below target_ongoing_requests: Serve would never see the target")
        return self

    def deployment_options(self) -> dict[str, Any]:
        """The ``.options(...)`` keyword arguments (and ``serve_config.yaml`` keys) these settings set."""
        autoscaling = self.model_dump(exclude={"max_ongoing_requests", "max_queued_requests"})
        return {"max_ongoing_requests": self.max_ongoing_requests, "max_queued_requests": self.max_queued_requests,
                "autoscaling_config": autoscaling}


class ApiScaling(ServeScaling):
    """``api``: REST requests of milliseconds. One replica's knee was 4-6 requests in flight (p99 about
    200 ms; beyond, it collapsed into seconds of queueing). The target is half the knee, not the knee: a
    new replica serves only 8-12 s after Serve adds it (imports, its pool), and its start takes CPU, so
    the replicas already running must absorb the growth meanwhile; scaling at the knee left them past it
    (bench/README.md, Autoscaling: 2,664 timeouts with target 4, none with 2 at a load they carry).
    Limit 16 per replica. The proxy's queue is bounded (``max_queued_requests``): a request that would
    wait seconds behind it is refused at once with a 503 instead, so that a backlog built while replicas
    start cannot outlive its cause (a queue at exactly the replicas' capacity never drains: clients time
    out while the replicas serve requests nobody waits for any more)."""

    max_replicas: int = Field(4, ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0)
    max_ongoing_requests: int = Field(16, ge=1)
    max_queued_requests: int = Field(100, ge=-1)
    upscale_delay_s: float = Field(10.0, ge=0)
    downscale_delay_s: float = Field(300.0, ge=0)


class GatewayScaling(ServeScaling):
    """``gateway``: one ongoing request per open WebSocket, for its life. One replica kept chat p99
    under 200 ms up to about 350 sockets chatting every 5 s, then climbed to seconds: target 200, the
    rest headroom for the sockets arriving while a replica starts. The limit stays high: a socket over
    it waits in the proxy with its handshake unanswered. Removing a replica cuts its sockets (after
    the graceful shutdown timeout), hence 600 s before scaling down."""

    max_replicas: int = Field(4, ge=1)
    target_ongoing_requests: float = Field(200.0, gt=0)
    max_ongoing_requests: int = Field(20_000, ge=1)
    upscale_delay_s: float = Field(10.0, ge=0)
    downscale_delay_s: float = Field(600.0, ge=0)


class MediaScaling(ServeScaling):
    """``media``: signed file reads, disk-bound; many in flight per replica (the earlier values, not
    measured here)."""

    max_replicas: int = Field(8, ge=1)
    target_ongoing_requests: float = Field(50.0, gt=0)
    max_ongoing_requests: int = Field(200, ge=1)
    upscale_delay_s: float = Field(10.0, ge=0)
    downscale_delay_s: float = Field(300.0, ge=0)
