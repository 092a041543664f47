"""Attachments: files encrypted under their own key, cut into chunks, verified by anyone.

``format`` holds the byte format (chunk sizes, the manifest and the attachment id, chunk
encryption), ``merkle`` the tree over the encrypted chunks whose root the id commits to,
``assembly`` the incremental sealer and opener and the holdings bitfield. The byte-level
specification is docs/protocol/attachments.md.
"""
