"""The Chicago taxi example pipeline (TFX's flagship example)."""
