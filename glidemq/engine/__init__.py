"""Python side of the engine: keys, connection, Lua loader, Job, Queue, Worker.

No process management here; that belongs to glidemq.supervisor.
"""
