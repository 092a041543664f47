"""The sans-IO protocol core of meshmsg.

Plain synchronous code over bytes and values: ``now`` is always passed in, randomness comes
from an injected :class:`~meshmsg.core.rng.Rng`, and nothing here touches a socket, a file, a
thread, a clock or trio. ``meshmsg.net`` (trio) and ``meshmsg.sim`` (virtual time) drive it
through the same interface; ``tests/test_layering.py`` enforces the rule.
"""
