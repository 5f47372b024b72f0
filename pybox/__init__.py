"""pybox: pull, build and run OCI container images."""

__all__ = ["__version__"]

__version__ = "0.1.0"
