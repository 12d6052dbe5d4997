"""Serving: the FastAPI app (REST API under /api/v1 and the web page at /)."""
