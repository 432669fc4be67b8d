"""Every error the package raises on purpose, and the exit codes a run or a command ends with.

Library code raises; only the command line's entry (:func:`trafficinator_locust.cli.main`) and the
plugin's top level (:mod:`trafficinator_locust.plugin`) turn an error into a message and an exit
code. Bad input of any kind is a :class:`UsageError` (exit 2, one clear message, no traceback);
a config file's problems travel together in one :class:`ConfigError` so a user fixes them all in
one pass::

    try:
        config = load_config("traffic.yaml")
    except ConfigError as error:
        print(describe(error), file=sys.stderr)
        sys.exit(EXIT_USAGE)

No message here ever holds a token: the raisers mask them (:mod:`.masking`) before they get here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trafficinator_locust.core.bulk import BulkAnswer

EXIT_OK = 0
EXIT_FAILED = 1
"""A check against a Matomo failed: ``verify`` found too little, ``validate --online`` or a backfill failed."""
EXIT_USAGE = 2
"""Bad input: the config, an option, a state or checkpoint file. Nothing was started."""
EXIT_CHECK_FAILED = 3
"""A ``--traffic-check`` rule failed at the end of a run."""
EXIT_VERIFY_FAILED = 4
"""``--traffic-verify``: Matomo's reports did not show what the run sent (a failed check's 3 wins)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT) ended a command."""
MAX_SHOWN_PROBLEMS = 50
"""Problems of a config printed by :func:`describe` (the total is always given)."""


class TrafficinatorError(Exception):
    """The base of every error raised on purpose."""


class UsageError(TrafficinatorError):
    """Bad input (options, ranges, files): printed as one message, exit code 2."""


class FileRefused(UsageError):
    """A file named by the user that is not a small regular file (a device, a FIFO, a folder, too big);
    the message names the file and the limit (:func:`core.files.read_small_text`)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: where it is, what is wrong, what is allowed."""

    source: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.path or '<top level>'}: {self.message}"


class ConfigError(UsageError):
    """Raised with every problem found, so a user fixes them all in one pass."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class StateError(UsageError):
    """The budget state file exists but cannot be used; the master refuses to guess a day's count."""


class CheckSyntaxError(UsageError, ValueError):
    """A ``--traffic-check`` rule that cannot be parsed; the message says what is allowed."""


class SendError(TrafficinatorError):
    """A tracker request that failed; ``retryable`` when Matomo cannot have stored anything."""

    def __init__(self, message: str, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


class BulkError(TrafficinatorError):
    """A bulk request that did not store every hit; ``answer`` holds the counts when known.

    ``status`` is the HTTP status (0 when no answer arrived). The message never contains the
    request body or the token.
    """

    def __init__(self, message: str, *, status: int = 0, answer: BulkAnswer | None = None):
        super().__init__(message)
        self.status = status
        self.answer = answer


class ReportingApiError(TrafficinatorError):
    """A Reporting API call that failed (network, HTTP status, or Matomo's error JSON)."""


class WebApiError(TrafficinatorError):
    """A web API answer other than success: HTTP status, message, and the config problems if any."""

    def __init__(self, status: int, message: str, problems: list[dict[str, object]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []


class PresetError(TrafficinatorError):
    """A preset operation that cannot be done as asked (the message says why and what to do)."""


class PresetInvalid(PresetError):
    """A bad name, or a token that is not a bare ``${VAR}`` reference."""


class PresetNotFound(PresetError):
    """No preset of that name."""


class PresetExists(PresetError):
    """A preset of that name exists already."""


class StalePreset(PresetError):
    """The caller's version is not the stored one: someone else saved in between."""

    def __init__(self, name: str, expected: int, current: int):
        self.current = current
        super().__init__(
            f"preset '{name}' is at version {current}, not {expected}: it changed since you read it; "
            "reload it and apply your change again"
        )


def describe(error: UsageError, what: str = "trafficinator", limit: int = MAX_SHOWN_PROBLEMS) -> str:
    """The text a user sees for bad input, under ``what`` (the command): every problem on its own line.

    At most ``limit`` problems of a :class:`ConfigError` are listed, and the total is always given: a
    hostile or generated file can hold 100,000 problems; the first ones show what to fix, the count how
    much there is, and printing them all would only bury the first.
    """
    if isinstance(error, ConfigError):
        count = len(error.problems)
        if count > limit:
            lines = [f"{what}: {count:,} problems in the traffic config (the first {limit} shown):"]
            lines += [f"  {problem}" for problem in error.problems[:limit]]
            lines.append(f"  ... and {count - limit:,} more problems; fix these and validate again")
            return "\n".join(lines)
        lines = [f"{what}: {count} problem{'s' if count != 1 else ''} in the traffic config:"]
        return "\n".join(lines + [f"  {problem}" for problem in error.problems])
    lines = str(error).splitlines()
    if len(lines) > 1:
        return f"{what}: {len(lines)} problems:\n" + "\n".join(f"  {line}" for line in lines)
    return f"{what}: {error}"
