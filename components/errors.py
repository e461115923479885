"""The two errors a user sees as one line: a bad definition, and a component rejecting its input."""


class DefinitionError(ValueError):
    """A pipeline or component definition is invalid; the message names the culprit."""


class ComponentError(RuntimeError):
    """A component rejected its input at run time; the message names the culprit.

    Raise it from an executor for bad data or bad user code: the CLI prints the
    message as one line, without a traceback.
    """
