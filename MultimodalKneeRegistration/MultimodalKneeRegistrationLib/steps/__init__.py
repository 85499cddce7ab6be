"""The pipeline's steps, in the order ``register`` runs them.

``inspection`` (what the two images are), ``planning`` (resolution, field of view, sampling),
``preprocessing`` (working images: block averaging, cropping, windowing), ``initialization`` (the
multi-start pose search, with ``gradient_correlation`` for a small image inside a large one),
``metrics`` (the fast scorer and Mattes MI) and ``checks`` (the result's sanity checks). Engines
(``..engines``) run between the search and the checks.
"""
