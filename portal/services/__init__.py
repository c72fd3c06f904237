"""Use cases. Called alike by views, jobs, the CLI and the API; they own the
transaction and emit domain events."""
