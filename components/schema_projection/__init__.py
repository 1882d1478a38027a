"""schema projection."""
