"""The run folder: its layout, its record (`events.jsonl`, `status.json`) and what it holds, read back."""
