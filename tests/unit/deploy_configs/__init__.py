"""Static checks of the container and observability configuration (no Docker engine needed)."""
