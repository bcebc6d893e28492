"""Errors that reach the user as one line and exit code 2 (DESIGN.md, Conventions)."""


class UserError(Exception):
    """A user mistake: bad YAML, missing column, unreadable input. Printed as one line, exit 2."""

    exit_code = 2


class ConfigError(UserError):
    """A pipeline spec that does not validate; the message names the file, the key and the fix."""

    def __init__(self, source: str, key: str, problem: str, fix: str = ""):
        self.source, self.key, self.problem, self.fix = source, key, problem, fix
        message = f"{source}: {key}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class InputError(UserError):
    """Input data that cannot be read as declared (missing file or column, corrupt or empty file)."""
