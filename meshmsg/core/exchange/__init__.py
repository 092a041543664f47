"""The meeting protocol and the mail rules, one module per part.

=============== ==========================================================================
module          part
=============== ==========================================================================
``dispatch``    :class:`Exchange`: builds the parts, routes each record, timers, link ends
``meeting``     handshake decisions; what starts once a link is up
``keys``        pairing, healing and key confirmation; the key schedule between meetings
``sync``        route tables, reconciliation, offers, replies and the transfers they decide
``custody``     receiving transfers (for us or to carry) and the peer's acknowledgements
``opening``     opening mail addressed to us; mail we carry that turns out to be ours
``sending``     sealing our own messages into envelopes
``receipts``    delivered and read receipts, batched
``purges``      purge tokens: dropping delivered mail everywhere
``holdings``    keeps store, reconciliation set, tombstones and records consistent
=============== ==========================================================================

Every part is handed the :class:`~meshmsg.core.state.NodeState`, the
:class:`~meshmsg.core.outbox.Outbox` and the parts it calls (never the ``Node``), built in the
order of the table's reverse, so no two parts call each other. This package module imports
nothing: importing one part never runs the others.
"""
