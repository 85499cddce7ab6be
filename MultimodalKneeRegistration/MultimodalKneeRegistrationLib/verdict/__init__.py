"""The verdict: the second half of the signature, whether the pose found can be trusted.

``judge.judge`` is the one entry point: it asks ``checks`` (the result's sanity checks) and
``evidence`` (what the search's competitors, the edges and the score's constraint say), grades the
evidence (``looks``) and returns one ``record.Verdict``. Nothing is imported here, so that
``results`` can use the record without importing the search.
"""
