"""The `funasr-supervisor` command: `serve` starts a Supervisor and the API over it; the other commands are a
client of a running server. It sits above `api/`, which it wires to the supervisor; nothing imports it."""
