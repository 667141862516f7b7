"""The preset: its schema and sections, cross-field rules, YAML files and overrides, samplers, text checks, paths."""
