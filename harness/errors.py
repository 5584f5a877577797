"""The harness's errors: one base class, a few specific kinds.

A message says what was expected, what was seen and where the evidence is. The CLI turns an
`InputError` into a one-line message and exit status 2.
"""


class HarnessError(Exception):
    """Base class of every error the harness raises on purpose."""


class InputError(HarnessError):
    """Bad input from the user: a missing or malformed file, a wrong channel, a bad label."""


class CorpusError(InputError):
    """The corpus manifest or one of its files is not what it should be."""
