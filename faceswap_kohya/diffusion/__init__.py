"""Generating with SDXL and Kohya LoRAs: the pipeline, LoRAs attached, prompts and samplers, images and grids."""
