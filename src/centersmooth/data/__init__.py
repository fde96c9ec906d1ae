"""Data sets and pretrained weights that install offline, each checked against a pinned
SHA-256 before it is read."""
