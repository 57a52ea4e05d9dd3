"""Why a clip is left out: one list of reasons for training, eval.py and LM tuning.

A clip that cannot be used is never an error and never dropped silently: it is skipped,
counted by its reason and reported (training's table of drops, eval.py's summary, the
tuning log), so one broken file never stops a long run.
"""

# The audio.
MISSING_AUDIO = "missing audio file"
EMPTY_AUDIO = "empty audio file"
UNREADABLE_AUDIO = "unreadable audio"
TRUNCATED_AUDIO = "truncated audio"
TOO_SHORT_FOR_MODEL = "audio too short for the model"
# The transcript.
EMPTY_TRANSCRIPT = "empty transcript"
EMPTY_AFTER_NORMALISATION = "transcript empty after normalisation"
# Training's own filters.
SHORTER_THAN_MIN = "shorter than min_duration_in_seconds"
LONGER_THAN_MAX = "longer than max_duration_in_seconds"
NO_FEATURES = "feature extraction failed"
TOO_MANY_LABELS = "more labels than output frames"

# Those a training run counts, in the order its table of drops lists them.
TRAINING_DROPS = (UNREADABLE_AUDIO, EMPTY_AUDIO, EMPTY_AFTER_NORMALISATION, SHORTER_THAN_MIN, LONGER_THAN_MAX,
                  NO_FEATURES, TOO_MANY_LABELS)
