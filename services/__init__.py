"""dooralert services: intake, router, notifier, audit, and their shared runtime."""
