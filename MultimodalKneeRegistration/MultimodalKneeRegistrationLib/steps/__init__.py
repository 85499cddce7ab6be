"""The pipeline's steps around the search and the verdict, in the order ``register`` runs them.

``reading`` (streamed inputs), ``inspection`` and ``roles`` (what the two images are),
``planning``, ``plan_resolution`` and ``auto_preset`` (resolution, field of view, sampling),
``preprocessing`` (working images: block averaging, cropping, windowing) and ``metrics`` (the one
Mattes MI evaluation the report quotes). The search (``..search``) runs after them, the engines
(``..engines``) after it, and the verdict (``..verdict``) last.
"""
