"""log example gen."""
