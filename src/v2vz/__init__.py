"""v2vz: text-driven video editing. This package is the torch-free client side (CLI, job description)."""

__version__ = "0.1.0"
