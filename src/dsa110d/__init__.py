"""dsa110d: the always-on service layer of the DSA-110 continuum pipeline."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dsa110d")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
