"""The meeting protocol and the mail rules, one module per part.

=============== ==========================================================================
module          part
=============== ==========================================================================
``dispatch``    :class:`Exchange`: builds the parts, routes each record, timers, link ends
``meeting``     handshake decisions; what starts once a link is up
``custody``     receiving transfers (for us or to carry) and the peer's acknowledgements
``keys``        pairing, healing and key confirmation; the key schedule between meetings
``opening``     opening mail addressed to us; mail we carry that turns out to be ours
``purges``      purge tokens: dropping delivered mail everywhere
``receipts``    delivered and read receipts, batched
``groups``      group mail: operations and chains to members, group envelopes in and out
``sending``     sealing our own messages into envelopes
``renewal``     starting key exchanges: the meeting's, and live heals of a low budget
``sync``        route tables, reconciliation, offers, replies and the transfers they decide
``holdings``    keeps store, reconciliation set, tombstones and records consistent
``bodies``      carried envelopes' bodies read back from disk, to transfers and openings
=============== ==========================================================================

Every part is handed the :class:`~meshmsg.core.state.NodeState`, the
:class:`~meshmsg.core.outbox.Outbox` and the parts it calls (never the ``Node``), built from the
bottom of the table up: a part calls only parts below it. This package module imports nothing:
importing one part never runs the others.
"""
