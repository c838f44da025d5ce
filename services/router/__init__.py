"""The router: declarative escalation rules applied to encounter events."""
