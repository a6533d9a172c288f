"""Python client of the experiment-assignment server.

The generated messages and stubs are ``assignment.v1`` (``types_pb2``,
``assignment_service_pb2``, ``experiment_service_pb2`` and their ``*_pb2_grpc`` stubs); this
package adds what every caller needs around them:

- ``connect()``: a channel with retries of the idempotent methods, a token, and typed stubs of
  both services (``Client.assignments``, ``Client.experiments``);
- ``column_answers()``: packed ``AssignmentColumn`` -> one ``ColumnAnswer`` per unit;
- ``stream_cohort()``: a cohort of any size through one StreamAssign call, as a generator of
  answered batches;
- ``hashing``: SPEC.md's hash version 1, to recompute answers offline;
- ``Params``: typed access to params (``get_string("button_color", "blue")``);
- ``rules``: SPEC.md's rule order (holdouts and the targeting outcome included) and namespace
  parameter merging, to recompute a whole answer offline from an experiment's state.
"""

from .client import MAX_MESSAGE_BYTES, Client, connect
from .cohort import MAX_BATCH_CELLS, MAX_BATCH_IDS, MAX_STREAM_EXPERIMENTS, CohortBatch, max_batch, stream_cohort
from .columns import ColumnAnswer, column_answers
from .hashing import evaluate, hash_v1, hashed_variant, rollout_bucket, segment, variant_bucket, variant_index
from .params import NamespaceParams, Params, params_by_namespace, params_column_answers
from .rules import ExperimentState, Holdout, Namespace, Outcome, decide, holdout_bucket, merge_params
from .retry import DEFAULT_RETRY, RetryPolicy, idempotent_methods, is_retryable, retry_service_config

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_RETRY",
    "ExperimentState",
    "Holdout",
    "Namespace",
    "Outcome",
    "NamespaceParams",
    "Params",
    "params_by_namespace",
    "params_column_answers",
    "decide",
    "holdout_bucket",
    "merge_params",
    "MAX_BATCH_CELLS",
    "MAX_BATCH_IDS",
    "MAX_MESSAGE_BYTES",
    "MAX_STREAM_EXPERIMENTS",
    "Client",
    "CohortBatch",
    "ColumnAnswer",
    "RetryPolicy",
    "column_answers",
    "connect",
    "evaluate",
    "hash_v1",
    "hashed_variant",
    "idempotent_methods",
    "is_retryable",
    "max_batch",
    "retry_service_config",
    "rollout_bucket",
    "segment",
    "stream_cohort",
    "variant_bucket",
    "variant_index",
]
