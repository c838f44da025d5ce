"""Audit: replaying the event log into incident timelines."""
