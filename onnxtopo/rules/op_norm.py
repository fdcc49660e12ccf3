"""BatchNormalization in inference mode: a constant per-channel affine map, so no layer.

y = scale·(x − mean)/sqrt(var + ε) + B keeps each neuron's vertex (section 2b). Right after an
edge-making op it scales that op's edges by s_c = scale_c / sqrt(var_c + ε), as onnxruntime's
Conv + BatchNormalization fusion does to the kernel; elsewhere it only changes h.
"""

from __future__ import annotations

import numpy as np

from . import affine_op, attribute, refuse


@affine_op("BatchNormalization")
def batch_normalization_scale(node, operand, in_shape, constants):
    if attribute(node, "training_mode", 0) or (len(node.output) > 1 and any(node.output[1:])):
        raise refuse(node, "it is in training mode", "export the model in inference mode (model.eval())")
    if operand != node.input[0]:
        raise refuse(node, "one of its parameters is computed at run time")
    if len(node.input) < 5 or not all(name in constants for name in node.input[1:5]):
        raise refuse(node, "its scale, bias, mean and variance are not all constant")
    if not in_shape:
        raise refuse(node, "its input has no channel axis")
    scale, _, _, var = (np.asarray(constants[name], dtype=np.float64) for name in node.input[1:5])
    if scale.shape != (in_shape[0],) or var.shape != (in_shape[0],):
        raise refuse(node, f"its parameters do not have one value per channel ({in_shape[0]})")
    factor = scale / np.sqrt(var + float(attribute(node, "epsilon", 1e-5)))
    return factor.reshape(-1, *[1] * (len(in_shape) - 1))
