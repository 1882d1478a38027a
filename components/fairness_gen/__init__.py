"""fairness gen."""
