"""What every package shares: the process protocol, log formatting, the error type and the HTTP contract's
Structs. A leaf: it imports only msgspec and the standard library, so the model processes, the supervisor, the
API and `api/seed/client.py` can all depend on it without depending on each other."""
