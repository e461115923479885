"""The Palmer penguins example pipeline (TFX's penguin example)."""
