"""Example handlers and the demo driver (not part of the glidemq package)."""
