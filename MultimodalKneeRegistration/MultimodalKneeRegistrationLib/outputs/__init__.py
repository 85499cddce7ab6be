"""What a run leaves for people: the JSON report, the QC picture, and the writer of the output set."""
