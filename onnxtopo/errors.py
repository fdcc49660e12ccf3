"""The exceptions onnxtopo raises on purpose.

Every failure a user can cause (a bad model file, an op we have no rule for, inputs of the wrong
shape) is one of these, with a message that says what was wrong and what to do. The CLI prints
the message on one line and exits with the class's ``exit_code``; anything else is a bug.
"""


class ExitCode:
    """Every exit code of the ``onnxtopo`` command, defined here only (README: "Errors and exit codes")."""

    OK = 0
    FAILURE = 1  # check: the model drifted; zoo: some model failed; a bare OnnxtopoError
    USAGE = 2  # a bad command line: argparse's own code
    BAD_MODEL = 3
    UNSUPPORTED_OP = 4
    BAD_INPUT = 5
    INVALID_FILTRATION = 6
    RESOURCE_LIMIT = 7
    CLUSTER_ERROR = 8  # ClusterError: Dask missing, scheduler unreachable, worker lost
    INTERNAL_ERROR = 70  # a bug of ours (sysexits.h's EX_SOFTWARE)
    INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT


class OnnxtopoError(Exception):
    """Base class of every error onnxtopo raises deliberately."""

    exit_code = ExitCode.FAILURE


class BadModelError(OnnxtopoError):
    """The model file is missing, unreadable or not a valid ONNX model."""

    exit_code = ExitCode.BAD_MODEL


class UnsupportedOpError(OnnxtopoError):
    """The model holds an op (or an op configuration) that no rule handles."""

    exit_code = ExitCode.UNSUPPORTED_OP


class BadInputError(OnnxtopoError):
    """The inputs do not fit the model: shape, dtype, non-finite values, file format."""

    exit_code = ExitCode.BAD_INPUT


class InvalidFiltrationError(OnnxtopoError):
    """A filtration in which an edge enters before one of its vertices."""

    exit_code = ExitCode.INVALID_FILTRATION


class ResourceLimitError(OnnxtopoError):
    """The analysis would need more memory than the limit allows."""

    exit_code = ExitCode.RESOURCE_LIMIT


class ClusterError(OnnxtopoError):
    """Dask is missing, the scheduler cannot be reached, or a worker died during a task."""

    exit_code = ExitCode.CLUSTER_ERROR
