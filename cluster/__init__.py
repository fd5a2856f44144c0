"""Deployment: the local launcher behind ``make up``, the Serve config and the KubeRay manifest."""
