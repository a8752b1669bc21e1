"""Errors that stop a stage with a message meant for the user, not a traceback."""


class PipelineError(RuntimeError):
    """Bad input or configuration: the message names the file, line or key to fix."""
