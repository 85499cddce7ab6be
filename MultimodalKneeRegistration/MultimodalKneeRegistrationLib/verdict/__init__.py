"""The verdict: the second half of the signature, whether the pose found can be trusted.

``checks`` (the result's sanity checks), ``evidence`` (what the search's competitors, the edges and
the score's constraint say) and ``judge`` (the looks graded into a confidence and a decision).
"""
