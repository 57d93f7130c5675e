"""What runs inside a child process.

The pipe protocol, the child main loop, handler import and resource limits. A
child never opens a Valkey connection and never holds credentials; it is
started as ``python -m glidemq.sandbox`` by
:class:`glidemq.supervisor.child.Child`. Modules: ``protocol`` (the msgspec
messages), ``framing`` (length-prefixed frames), ``child`` (``Sandbox``, the
runtime, and ``SandboxJob``, what a handler receives), ``handler`` (import by
``"package.module:function"``), ``limits`` (rlimits, parent-death signal),
``exitcodes`` (the exit-code contract).

This package exports nothing, and importing it must stay cheap: no valkey, no
``glidemq.engine``, no asyncio unless a handler is async.
"""
