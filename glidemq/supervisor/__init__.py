"""The supervisor process: one per machine, the root of glidemq's actor tree.

It owns the Valkey connection (or starts the embedded server), fetches jobs,
hands them to sandboxed child processes over pipes, restarts children that
crash, kills those that overrun their limits, and grows or shrinks each queue's
pool by CPU load and queue depth. Entry point: ``glidemq-supervisor`` (see
:mod:`glidemq.supervisor.cli`); configuration: :mod:`glidemq.supervisor.config`.

This package exports nothing: the public API lives in :mod:`glidemq`.
"""
