"""BatchNormalization that onnxruntime could not fold into a Conv: one edge per neuron.

In inference mode y = scale·(x − mean)/sqrt(var + ε) + B, so each output neuron is its input
neuron times its channel's factor: w_{u->v} = scale_c / sqrt(var_c + ε), with u and v the same
position. B and the mean add no edge.
"""

from __future__ import annotations

import numpy as np

from . import EdgePattern, EdgeRule, attribute, edge_rule, refuse


@edge_rule("BatchNormalization")
class BatchNormalizationRule(EdgeRule):
    rule_name = "scale"

    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        if attribute(node, "training_mode", 0) or (len(node.output) > 1 and any(node.output[1:])):
            raise refuse(node, "it is in training mode", "export the model in inference mode (model.eval())")
        if len(node.input) < 5 or not all(name in constants for name in node.input[1:5]):
            raise refuse(node, "its scale, bias, mean and variance are not all constant")
        if not in_shape:
            raise refuse(node, "its input has no channel axis")
        scale, _, _, var = (np.asarray(constants[name], dtype=np.float64) for name in node.input[1:5])
        if scale.shape != (in_shape[0],) or var.shape != (in_shape[0],):
            raise refuse(node, f"its parameters do not have one value per channel ({in_shape[0]})")
        self.factor = scale / np.sqrt(var + float(attribute(node, "epsilon", 1e-5)))
        self.out_shape = tuple(in_shape)
        self.outer_size = in_shape[0]
        self.edges_per_outer = int(np.prod(in_shape[1:]))

    def build_pattern(self, part: slice) -> EdgePattern:
        channels = np.arange(self.outer_size)[part]
        per_channel = self.edges_per_outer
        positions = (channels[:, None] * per_channel + np.arange(per_channel)[None, :]).ravel()
        return EdgePattern(src=positions, dst=positions.copy(), weight=np.repeat(self.factor[channels], per_channel))
