"""Groups: signed membership that converges offline, sender keys per epoch, group envelopes.

``ops`` (signed operations and their codec), ``resolve`` (the operation graph to a membership),
``group`` (one group's graph, pending operations and limits), ``senderkeys`` (per-member sender
chains and group envelopes). The byte-level specification is docs/protocol/groups.md.
"""
