"""HTTP and WebSocket adapters: the FastAPI app, its routes and the Ray Serve deployments."""
