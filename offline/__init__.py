"""Offline bundles for GPU nodes without network: the wheels a node lacks (for ITS Python and
platform), plus data and model folders, in one archive cut into parts of a capped size.

- :mod:`offline.resolve`: which wheels the node lacks, and getting them (metadata-only pip
  resolution against the node's ``pip freeze``; source-only packages built into wheels).
- :mod:`offline.build`: packing wheels, data and models into parts with a manifest.
- :mod:`offline.install`: checking, extracting and installing a bundle on the node.
- :mod:`offline.parts` and :mod:`offline.common`: the parts as one stream, and what both
  halves share. Stdlib only: a node may have nothing but Python and pip.

Command line: ``scripts/bundle.py`` (``make bundle`` / ``make bundle-install``).
"""
