"""tunnelwatch: finds what blocks the AKS tunnel (TCP 10250 and the egress it needs)."""

__version__ = "0.1.0"
