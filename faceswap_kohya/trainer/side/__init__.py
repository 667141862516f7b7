"""Scripts the trainer's python runs inside sd-scripts (never imported by this package)."""
