"""User-facing errors. The CLI turns any ``RelookError`` into a one-line message and its ``exit_code``: 2
for bad input (the same command fails again until the input changes), 1 for a fault of the environment
(``ResourceError``: a full disk, a run folder in use by another process; the same command can succeed later)."""


class RelookError(Exception):
    """Base class of every error relook raises on purpose (bad input, bad config, bad data)."""

    exit_code = 2


class ShapeError(RelookError, ValueError):
    """An array does not have the shape or dtype the caller documented."""


class ConfigError(RelookError, ValueError):
    """An unknown name, a bad option value or an inconsistent configuration."""


class DataError(RelookError, ValueError):
    """A file or dataset on disk is missing, malformed or inconsistent."""


class ResourceError(RelookError):
    """The environment cannot serve the command now: no free disk space, a run folder locked by another
    relook process. Exit code 1: nothing is wrong with the input, and what was written before is intact."""

    exit_code = 1
