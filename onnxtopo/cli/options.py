"""Options and argument files that several commands share."""

from __future__ import annotations

from ..errors import BadInputError
from ..rules.op_pool import MAXPOOL_RULES
from .argtypes import positive_int


def add_model_options(p) -> None:
    p.add_argument("model", help="an .onnx model file")
    p.add_argument("--maxpool-rule", choices=MAXPOOL_RULES, default="window",
                   help="MaxPool edges: every input of the window (default) or the argmax only")


def add_span_options(p) -> None:
    p.add_argument("--start", metavar="TENSOR",
                   help="analyze from this tensor on (layer 0) instead of the model input")
    p.add_argument("--stop", metavar="TENSOR", help="analyze up to the layer of this tensor")


def add_labelled_inputs(p) -> None:
    p.add_argument("--inputs", required=True, help=".npy or .npz file of shape (n, *sample shape)")
    p.add_argument("--key", help="which array of an --inputs .npz")
    p.add_argument("--labels", required=True, help="true classes (.npy/.npz), one per input")
    p.add_argument("--labels-key", help="which array of a --labels .npz")
    p.add_argument("--limit", type=positive_int, help="use only the first N inputs")


def load_labels(args, n: int):
    """The first ``n`` labels of ``--labels``: a 1-D integer array."""
    from ..files import load_inputs

    labels = load_inputs(args.labels, args.labels_key)
    if labels.ndim != 1 or labels.dtype.kind not in "iub":
        raise BadInputError(f"labels must be a 1-D integer array; got shape {labels.shape}, dtype {labels.dtype}")
    return labels[:n]
