"""t5rank."""
