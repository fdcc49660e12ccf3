#!/usr/bin/env python3
"""Export the trained CCFF-relu weights with PyTorch's dynamo-based ONNX exporter.

Writes ``models/ccff-relu-dynamo.onnx``: the same network and the same weights
(``build/ccff-relu.weights.npz``) as ``models/ccff-relu.onnx``, but exported with
``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript) instead of the
legacy TorchScript exporter.  Nothing is trained.

Environment: ``requirements.txt`` (the same one train_ccff.py uses: torch 2.13.0+cpu,
onnxscript 0.7.2, onnx, onnxruntime).

Usage (from the repository root):
    python models/build/export_ccff_dynamo.py [--opset N] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import onnxscript
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as common
from train_ccff import CCFF


def build_model() -> CCFF:
    model = CCFF(torch.nn.ReLU)
    w = common.load_weights("ccff-relu")
    with torch.no_grad():
        for name in ("c1", "c2", "l1", "l2"):
            param = getattr(model, name).weight
            assert tuple(param.shape) == w[name].shape
            param.copy_(torch.from_numpy(w[name]))
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--opset", type=int, default=None,
                    help="ONNX opset (default: the exporter's default)")
    ap.add_argument("--out", type=Path, default=common.MODELS / "ccff-relu-dynamo.onnx")
    args = ap.parse_args()

    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, onnxscript {onnxscript.__version__}, "
          f"onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    model = build_model()
    x_ho, y_ho = common.load_heldout()
    example = torch.from_numpy(x_ho[:2])

    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(
            model, (example,),
            dynamo=True,
            opset_version=args.opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch}},   # `x` is CCFF.forward's argument
            optimize=True,
            external_data=False,
        )
    program.save(str(args.out), external_data=False)

    info = common.check_file(args.out)
    common.print_summary(args.out, info)

    # The weights in the file must be exactly the trained ones (up to transpose:
    # a bias-free Linear may be stored as W or W.T).
    proto = onnx.load(str(args.out))
    w = common.load_weights("ccff-relu")
    inits = sorted(onnx.numpy_helper.to_array(t).tobytes() for t in proto.graph.initializer)
    candidates = [{np.ascontiguousarray(a).tobytes(), np.ascontiguousarray(a.T).tobytes()}
                  if a.ndim == 2 else {a.tobytes()} for a in w.values()]
    unmatched = [t.name for t in proto.graph.initializer
                 if not any(onnx.numpy_helper.to_array(t).tobytes() in c for c in candidates)]
    print(f"  initializers: {[(t.name, list(t.dims)) for t in proto.graph.initializer]}")
    extra = {t.name: onnx.numpy_helper.to_array(t).tolist() for t in proto.graph.initializer
             if t.name in unmatched}
    if len(inits) - len(unmatched) != 4 or any(len(np.ravel(v)) > 8 for v in extra.values()):
        raise RuntimeError(f"{args.out}: the trained weights are not all stored unchanged")
    print(f"  the 4 weight initializers equal the trained weights bit for bit "
          f"(PyTorch layout); other initializers: {extra}")
    print(f"  node metadata_props keys: "
          f"{sorted({p.key for n in proto.graph.node for p in n.metadata_props})}")
    common.print_nodes(args.out)

    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x_ho)).numpy()
    got = common.run(args.out, x_ho)
    print(f"  vs torch eager: max |diff| {np.abs(got - torch_logits).max():.3g}")
    common.compare_with_reference(args.out, x_ho, y_ho)

    common.print_heldout_accuracy(args.out)


if __name__ == "__main__":
    main()
