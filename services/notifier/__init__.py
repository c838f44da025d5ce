"""The notifier: delivers requested notifications and records each outcome as an event."""
