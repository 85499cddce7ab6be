"""Reading inputs and writing outputs: images (files, DICOM series), transforms, atomic writers.

Why: most failed registrations start with an input that is not what the user thought, and a run
that dies half-way must never leave half an output. Every reader here returns a usable 3D scalar
image or raises ``InputError`` saying what to do; every writer is atomic.
"""

#: Inputs whose voxels take more than this (MB) are read in slabs, never whole (``--stream-above-mb``);
#: in Slicer, volumes above it reach the core over the node's own voxels. Here, in a module that
#: imports nothing, so the Slicer shell reads it without loading SimpleITK.
STREAM_ABOVE_MB = 256.0
