"""Intake: the staff form and HTTP API that record door encounters, and the status pages."""
