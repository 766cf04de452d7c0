"""refreshd: when a mobile homepage should refresh its recommendations, without duplicates."""

__version__ = "0.1.0"
__all__ = ["__version__"]
