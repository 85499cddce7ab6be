"""Reading inputs and writing outputs: images (files, DICOM series), transforms, atomic writers.

Why: most failed registrations start with an input that is not what the user thought, and a run
that dies half-way must never leave half an output. Every reader here returns a usable 3D scalar
image or raises ``InputError`` saying what to do; every writer is atomic.
"""
