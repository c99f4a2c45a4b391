"""A fleet: several machines behind one seed API, on Ray. Each Ray node runs one `NodeAgent` (a Ray actor pinned
to it) holding the existing supervisor; the gateway (`FleetSupervisor`) is a facade over all of them that the
flows and the protocol adapters use unchanged."""
