"""``meshmsg bench``: speed measured against the limits of the machine it runs on.

Each row prints a figure next to the limit measured in the same run (raw crypto, raw TCP, a
bare SQLite commit, the Noise handshake), as a ratio. ``suite`` holds the runner, the table and
the CLI; the other modules own the figures of one part each (``measure``: links and daemons,
``storage``: durable commits, ``sync``: reconciliation, ``e2e``: sealing and opening).
"""
