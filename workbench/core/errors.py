"""The errors a user can fix, as opposed to bugs.

Every error the workbench raises about its input (a config, a dataset, a task, a template, a
flag, a file that a step needs or would overwrite) is a `WorkbenchError` whose message says what
was wrong, where, and what to do. The command line prints such an error as one line and exits 2;
any other exception is a bug in the workbench or a library and keeps its traceback.

Each subclass also derives from the built-in exception its kind of mistake has always raised
(ValueError, FileNotFoundError, FileExistsError), so code that catches those still catches them.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """An error the user can fix; its message names the thing and the fix."""


class InputError(WorkbenchError, ValueError):
    """A config, dataset, task, template or argument the workbench cannot use as given."""


class MissingInputError(WorkbenchError, FileNotFoundError):
    """A file or folder that a step reads is not there (usually: an earlier step was not run)."""


class OverwriteError(WorkbenchError, FileExistsError):
    """A step would replace what an earlier one wrote; the message names the flag that allows it."""
