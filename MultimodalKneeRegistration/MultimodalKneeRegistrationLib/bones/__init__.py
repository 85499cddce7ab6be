"""Per-bone registration for knees scanned at different flexion angles.

``masks`` (bone labels: from a segmentation file or found in the CT), ``per_bone`` (one rigid
registration per bone, restricted to its mask) and ``blended_field`` (one displacement field that
moves each bone rigidly).
"""
