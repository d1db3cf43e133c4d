"""The signed-tree format every host shares: keys, signatures, the stamp, the
change journal (manifest) and atomic file writes."""
