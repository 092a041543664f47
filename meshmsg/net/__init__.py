"""The trio driver: TCP links, discovery, storage and the daemon (the only async code)."""
