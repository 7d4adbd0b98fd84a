"""One exception root for mecsim.

Every error that mecsim raises on purpose derives from :class:`MecsimError` and from the builtin it
resembles, so ``except ValueError`` still works for users who do not know about mecsim's types.
The command line turns any ``MecsimError`` into one line on stderr and exit code 2.
"""

from __future__ import annotations


class MecsimError(Exception):
    """Root of all errors raised on purpose by mecsim."""


class ScenarioError(MecsimError, ValueError):
    """A scenario (file, dict or override) is malformed or inconsistent.

    Attributes:
        field: dotted path of the offending field, e.g. ``"devices.0.arrivals.rate_per_s"``.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class PolicyError(MecsimError, ValueError):
    """A policy could not be found, built, or returned an invalid decision."""


class SolverError(MecsimError, RuntimeError):
    """A QUBO solver could not be found, refused a problem, or failed."""


class MissingExtraError(MecsimError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the optional package {package!r}; "
            f"install it with: pip install 'mecsim[{extra}]'"
        )


class RunError(MecsimError, RuntimeError):
    """A run stopped early because of an error (e.g. in a user's policy).

    Attributes:
        result: the :class:`~mecsim.results.Result` of what was simulated before the stop,
            marked ``complete=False`` (or None if nothing could be collected).
    """

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class RunInterrupted(MecsimError, KeyboardInterrupt):
    """A run was interrupted (Ctrl-C); ``result`` holds what was simulated, marked incomplete."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result
