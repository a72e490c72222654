"""The label spaces of the three tasks (paper §3.3, §4.2) in Aff-Wild2's (ABAW2) conventions, and the label maps of
the external datasets (§3.4) onto them. The one home of these constants: data/ and models/ both import it."""

# Action units in the ABAW2 order; values 0/1, AU_MISSING where not annotated.
AU_NAMES = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
NUM_AUS = len(AU_NAMES)
AU_MISSING = -1

# Basic expressions in the ABAW2 order; EXPR_MISSING where not annotated.
EXPR_NAMES = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
NUM_EXPRS = len(EXPR_NAMES)
EXPR_MISSING = -1

# Valence and arousal in [-1, 1]; VA_MISSING where not annotated.
VA_NAMES = ("valence", "arousal")
NUM_VA = len(VA_NAMES)
VA_MISSING = -5.0

TASKS = ("au", "expr", "va")
# The header line of an ABAW2 annotation (and submission) file per task.
HEADERS = {"au": ",".join(AU_NAMES), "expr": ",".join(EXPR_NAMES), "va": ",".join(VA_NAMES)}

# External datasets (ARCHITECTURE.md, "Label conventions"): their label index -> ABAW2 index (None: no counterpart).
BP4D_AUS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24")
AFFECTNET_TO_ABAW_EXPR = {0: 0, 1: 4, 2: 5, 3: 6, 4: 3, 5: 2, 6: 1, 7: None}
DFEW_TO_ABAW_EXPR = {1: 4, 2: 5, 3: 0, 4: 1, 5: 6, 6: 2, 7: 3}
