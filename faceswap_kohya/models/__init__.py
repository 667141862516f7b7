"""Base models, offline: which model a preset names, model-file checks, CLIP tokenizers, the check model."""
