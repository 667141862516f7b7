"""Kohya's sd-scripts as the trainer: render its TOMLs and command, launch it, follow its output."""
