"""Scripts that run inside the trainer's venv with sd-scripts on sys.path (not imported by the package)."""
