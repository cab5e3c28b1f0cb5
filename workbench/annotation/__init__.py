"""Stage 3: annotators correct model outputs in Argilla; corrections come back as DataFrames.

`connect` makes a client for a running server (it never starts one); `push_predictions` and
`push_errors` send a run's answers as suggestions; `pull_corrections` brings the responses back
and `load_corrections` reads a saved snapshot. `_argilla` is the only module that imports argilla.
"""

from workbench.annotation._argilla import Client, connect, dataset_settings, find_dataset
from workbench.annotation.errors import AnnotationError, ArgillaUnavailableError, PushError
from workbench.annotation.pull import pull_corrections
from workbench.annotation.push import PushResult, push_errors, push_predictions
from workbench.annotation.snapshots import correction_columns, load_corrections
from workbench.evaluation.agreement import AnnotatorAgreement, annotator_agreement, suggestion_acceptance

__all__ = [
    "AnnotationError", "AnnotatorAgreement", "ArgillaUnavailableError", "Client", "PushError", "PushResult",
    "annotator_agreement", "connect", "correction_columns", "dataset_settings", "find_dataset", "load_corrections",
    "pull_corrections", "push_errors", "push_predictions", "suggestion_acceptance",
]
