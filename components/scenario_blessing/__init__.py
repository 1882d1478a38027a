"""scenario blessing."""
