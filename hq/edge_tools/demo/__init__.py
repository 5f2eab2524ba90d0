"""`edge demo`: the whole flow on embedded defaults, with throw-away keys and services."""
