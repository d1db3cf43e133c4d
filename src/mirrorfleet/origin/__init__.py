"""The origin host: sign a new serial for what landed in the tree (an origin publish)."""
