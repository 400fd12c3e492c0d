"""Errors a user can cause and fix. The CLI prints these as one line, never a traceback."""


class UserError(Exception):
    """A mistake in the user's input: the message says what was wrong and how to fix it."""

    exit_code = 2


class DataError(UserError):
    """A dataset that cannot be found, loaded, or trusted (damaged or wrongly shaped)."""

    exit_code = 3


class DivergedError(Exception):
    """A training run produced a non-finite loss and was stopped."""

    exit_code = 4
