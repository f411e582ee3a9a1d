"""User-facing errors. The CLI turns any ``RelookError`` into a one-line message and exit code 2."""


class RelookError(Exception):
    """Base class of every error relook raises on purpose (bad input, bad config, bad data)."""


class ShapeError(RelookError, ValueError):
    """An array does not have the shape or dtype the caller documented."""


class ConfigError(RelookError, ValueError):
    """An unknown name, a bad option value or an inconsistent configuration."""


class DataError(RelookError, ValueError):
    """A file or dataset on disk is missing, malformed or inconsistent."""
