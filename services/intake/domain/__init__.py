"""The intake's decisions, pure: acknowledgements (acks.py), follow-ups (followups.py) and
Idempotency-Keys (idempotency.py). Each returns the event to record or a typed `Refused`;
none reads a clock, the network or the environment."""
