"""Stage 3: annotators correct model outputs in Argilla; corrections come back as DataFrames."""

from workbench.annotation.client import AnnotationError, ArgillaUnavailableError, connect
from workbench.annotation.pull import correction_columns, load_corrections, pull_corrections
from workbench.annotation.push import PushError, PushResult, dataset_settings, push_errors, push_predictions
from workbench.evaluation.agreement import AnnotatorAgreement, annotator_agreement, suggestion_acceptance

__all__ = [
    "AnnotationError", "AnnotatorAgreement", "ArgillaUnavailableError", "PushError", "PushResult",
    "annotator_agreement", "connect", "correction_columns", "dataset_settings", "load_corrections",
    "pull_corrections", "push_errors", "push_predictions", "suggestion_acceptance",
]
