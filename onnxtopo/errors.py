"""The exceptions onnxtopo raises on purpose.

Every failure a user can cause (a bad model file, an op we have no rule for, inputs of the wrong
shape) is one of these, with a message that says what was wrong and what to do. The CLI prints
the message on one line and exits with the class's ``exit_code``; anything else is a bug.
"""


class OnnxtopoError(Exception):
    """Base class of every error onnxtopo raises deliberately."""

    exit_code = 1


class BadModelError(OnnxtopoError):
    """The model file is missing, unreadable or not a valid ONNX model."""

    exit_code = 3


class UnsupportedOpError(OnnxtopoError):
    """The model holds an op (or an op configuration) that no rule handles."""

    exit_code = 4


class BadInputError(OnnxtopoError):
    """The inputs do not fit the model: shape, dtype, non-finite values, file format."""

    exit_code = 5


class InvalidFiltrationError(OnnxtopoError):
    """A filtration in which an edge enters before one of its vertices."""

    exit_code = 6


class ResourceLimitError(OnnxtopoError):
    """The analysis would need more memory than the limit allows."""

    exit_code = 7


class ClusterError(OnnxtopoError):
    """Dask is missing, the scheduler cannot be reached, or a worker died during a task."""

    exit_code = 8
