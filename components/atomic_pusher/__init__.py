"""atomic pusher."""
