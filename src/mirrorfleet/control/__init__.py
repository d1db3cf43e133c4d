"""Control-node code: reading and checking inventories, and the deploy lock."""
