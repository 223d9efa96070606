"""``spartan debug``: which block of SpaRTAN loses accuracy in a reduced-precision graph.

Library entry points: :func:`debug_artefact` (the command), :func:`rank_units` (the unit
order ``quantize --max-drop`` returns to float), :func:`expand_block_names` with
:func:`block_map_of` (``--exclude stage3.block7.cmixer`` -> node names).

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "BlockMap": "blocks", "Unit": "blocks", "UnitKind": "blocks",
    "expand_block_names": "blocks", "find_block_map": "blocks",
    "DebugOptions": "core", "DebugReport": "core", "RankedUnit": "core",
    "block_map_of": "core", "debug_artefact": "core", "rank_units": "core",
    "float_unit": "graphs", "graph_precision": "graphs",
    "write_plot": "report", "write_report": "report",
})
