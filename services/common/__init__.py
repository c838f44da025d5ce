"""Shared runtime: settings, logging, NATS provisioning, the directory, the CLI."""
