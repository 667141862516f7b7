"""Kohya preset formats: kohya_ss GUI JSON and sd-scripts / kohya-colab TOML, imported and exported."""
