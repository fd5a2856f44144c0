"""One router per resource; ``serve_deployments.app`` includes them all."""
