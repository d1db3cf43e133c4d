"""Probes: observe a mirror as a client would (observe.py) and spot-check its files
against the signed change records (spotcheck.py). The monitor and the client use them."""
