"""The checks of deployed hosts: testinfra modules, one per role, run over SSH against
the hosts of any pyinfra inventory.

They are a package, not a folder of the checkout, so `mirrorfleet verify` finds them in
an installed `mirrorfleet[deploy]` (control node) just as in a checkout. They are run by
pytest, never imported by the rest of mirrorfleet, and the wheel hosts install leaves
them out (roles/install): a host never checks itself.
"""
