"""mirrorfleet: a fleet of package mirrors as code."""

__version__ = "0.1.0"
