"""onnxtopo: persistent homology of the graph a neural network exported to ONNX induces on an input.

Data flows one way: model (``model``) -> plan of layers and rules (``plan``, ``rules``) ->
activations (``activations``, through ``runtime``'s onnxruntime sessions) -> induced graph
(``graph``) -> filtration (``filtration``) -> diagrams and persistent subgraph (``homology``).
``api`` ties them together, running batches here or in worker processes (``executors``); ``cli``
is the command line.
"""

from .api import (
    AnalysisOptions,
    AnalysisResult,
    Analyzer,
    Failure,
    analyze,
    induced_graph,
    inspect,
    persistence,
)
from .errors import (
    BadInputError,
    BadModelError,
    ClusterError,
    InvalidFiltrationError,
    OnnxtopoError,
    ResourceLimitError,
    UnsupportedOpError,
)
from .filtration import Filtration, superlevel_filtration
from .graph import InducedGraph
from .homology import Persistence, PersistentSubgraph
from .plan import Plan
from .static import LayerPersistence, StaticPersistence, WholeNetwork, static_persistence

__version__ = "0.1.0"

__all__ = [
    "AnalysisOptions",
    "AnalysisResult",
    "Analyzer",
    "BadInputError",
    "BadModelError",
    "ClusterError",
    "Failure",
    "Filtration",
    "InducedGraph",
    "InvalidFiltrationError",
    "LayerPersistence",
    "OnnxtopoError",
    "Persistence",
    "PersistentSubgraph",
    "Plan",
    "ResourceLimitError",
    "StaticPersistence",
    "UnsupportedOpError",
    "WholeNetwork",
    "analyze",
    "induced_graph",
    "inspect",
    "persistence",
    "static_persistence",
    "superlevel_filtration",
]
