"""The zone writer: the fleet's records (records.py), the plan against the live zone
(plan.py, which imports no provider), the providers that read and write a zone
(providers/), and the zone update that ties them together (update.py)."""
