"""The search: the first half of the signature, a pose found wherever the images start.

``initialization`` (the multi-start search and the other initialisation modes), ``rotations`` (the
rotations it tries), ``edge_correlation`` and ``pose_levels`` (a small image found inside a large
one by edge maps, coarse to fine), ``local_search`` (pattern search), ``scorer`` (the fast
mutual-information score every pose is ranked by) and ``poses`` (when two poses are different
answers). ``..verdict`` is the second half: whether the pose found can be trusted.
"""
