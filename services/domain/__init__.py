"""The shared pure domain: the incident fold, the directory model, protocol texts, tokens.

Nothing here reads a clock, the environment or the network."""
