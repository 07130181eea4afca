"""drift_monitor."""
