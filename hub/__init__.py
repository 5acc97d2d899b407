"""LeadHub: one lead process enforced across the CRMs a company already has."""

__version__ = "0.1.0"
__all__ = ["__version__"]
