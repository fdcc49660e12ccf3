"""onnxtopo: persistent homology of the graph a neural network exported to ONNX induces on an input.

Data flows one way: model (``model``) -> plan of layers and rules (``plan``, ``rules``) ->
activations (``activations``) -> induced graph (``graph``) -> filtration (``filtration``) ->
diagrams and persistent subgraph (``homology``). ``api`` ties them together; ``cli`` is the
command line.
"""

from .api import AnalysisResult, Analyzer, analyze, induced_graph, inspect, persistence
from .errors import BadInputError, BadModelError, InvalidFiltrationError, OnnxtopoError, UnsupportedOpError
from .filtration import Filtration, superlevel_filtration
from .graph import InducedGraph
from .homology import Persistence, PersistentSubgraph
from .plan import Plan

__version__ = "0.1.0"

__all__ = [
    "AnalysisResult",
    "Analyzer",
    "BadInputError",
    "BadModelError",
    "Filtration",
    "InducedGraph",
    "InvalidFiltrationError",
    "OnnxtopoError",
    "Persistence",
    "PersistentSubgraph",
    "Plan",
    "UnsupportedOpError",
    "analyze",
    "induced_graph",
    "inspect",
    "persistence",
    "superlevel_filtration",
]
