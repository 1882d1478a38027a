"""statistics gen."""
