"""Per-label reservoir sampling in numba: pure numpy, no I/O.

Public API: :class:`LabelReservoirs`, :class:`QuotaPolicy`, :class:`UpdateResult`,
:class:`RetainedItems`, :class:`BalanceReport`, :func:`expand_labels`,
:func:`balance_ratio`, :func:`jaccard_stability`, :func:`eval_mask` with
:data:`EVAL_LABEL` (the evaluation slice), sub-strata inside a label (:class:`Grid`,
:func:`stratum_name`, :func:`group_of`, :func:`by_label`), and the error classes.
"""

from .balance import BalanceReport, balance_ratio, jaccard_stability
from .errors import (
    ConfigError,
    InputError,
    LabelOverflowError,
    StateError,
    StratastreamError,
)
from .evalslice import EVAL_LABEL, eval_mask
from .multilabel import LabelRows, expand_labels
from .quota import QuotaPolicy
from .reservoirs import LabelReservoirs, RetainedItems, UpdateResult
from .strata import Grid, by_label, group_of, stratum_name

__all__ = [
    "EVAL_LABEL",
    "BalanceReport",
    "ConfigError",
    "Grid",
    "InputError",
    "LabelOverflowError",
    "LabelReservoirs",
    "LabelRows",
    "QuotaPolicy",
    "RetainedItems",
    "StateError",
    "StratastreamError",
    "UpdateResult",
    "balance_ratio",
    "by_label",
    "eval_mask",
    "expand_labels",
    "group_of",
    "jaccard_stability",
    "stratum_name",
]
