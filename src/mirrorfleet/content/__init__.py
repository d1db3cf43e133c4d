"""Content types a mirror tree can hold.

The sync agent only knows "content" paths and "index" paths; each module here knows
how one archive format lays them out, so it can build, extend or import such a tree.
Standard library only: these modules also run on hosts that have just Debian's python3.
"""
