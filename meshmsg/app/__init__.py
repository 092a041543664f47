"""The application around the sans-IO node: what a user runs and touches.

``datadir`` (data directory, settings, unlock, offline access), ``keystore`` (sealed identity
and database key), ``daemon`` (the trio driver plus discovery and storage, as one process),
``api`` (the local HTTP + WebSocket API), ``client`` (the CLI's client of that API), ``views``
(JSON views of the node's state), ``qr``, ``demo`` and ``cli``. It sits above ``meshmsg.net``
(the trio driver) and ``meshmsg.core``; nothing below imports it.
"""
