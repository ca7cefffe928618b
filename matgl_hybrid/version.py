"""The package version (one place), and the installed versions of the packages it builds on."""

from importlib import metadata

__version__ = "0.1.0"


def installed_version(package: str) -> str | None:
    """The installed version of ``package``, or None when it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
