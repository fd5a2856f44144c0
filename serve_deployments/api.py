"""The ``api`` Serve deployment: the FastAPI app as a Serve ingress.

Replica counts and options come from ``cluster/serve_config.yaml``, autoscaling and the request limit
from the settings (``verseflow/scaling.py``); the class only hosts the app.
"""

from __future__ import annotations

from ray import serve

from serve_deployments.app import create_app

app = create_app()


@serve.deployment(name="api", max_ongoing_requests=100, health_check_period_s=10)
@serve.ingress(app)
class Api:
    """REST API and OpenAPI; one asyncpg pool and Redis client per replica (opened by the lifespan)."""
