"""Process plumbing every service shares: settings from the environment, structured logging
and loading YAML config files with actionable errors."""
