"""The procedural synthetic datasets the project renders itself (no licensed data needed): faces with exact AU,
expression and valence/arousal ground truth, written in Aff-Wild2's layout."""
