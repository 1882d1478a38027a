"""anomaly gate."""
