from assignment.v1 import types_pb2 as _types_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

ASSIGNMENT_EVENT_KIND_ASSIGNED: AssignmentEventKind
ASSIGNMENT_EVENT_KIND_COPIED: AssignmentEventKind
ASSIGNMENT_EVENT_KIND_ERASED: AssignmentEventKind
ASSIGNMENT_EVENT_KIND_IMPORTED: AssignmentEventKind
ASSIGNMENT_EVENT_KIND_OVERRIDE_CLEARED: AssignmentEventKind
ASSIGNMENT_EVENT_KIND_OVERRIDE_SET: AssignmentEventKind
ASSIGNMENT_EVENT_KIND_OVERWRITTEN: AssignmentEventKind
ASSIGNMENT_EVENT_KIND_UNSPECIFIED: AssignmentEventKind
DESCRIPTOR: _descriptor.FileDescriptor
IMPORT_POLICY_OVERWRITE: ImportPolicy
IMPORT_POLICY_SKIP_EXISTING: ImportPolicy
IMPORT_POLICY_UNSPECIFIED: ImportPolicy

class AllocateSegmentsRequest(_message.Message):
    __slots__ = ["experiment_key", "namespace_key", "segments"]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_KEY_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    namespace_key: str
    segments: int
    def __init__(self, namespace_key: _Optional[str] = ..., experiment_key: _Optional[str] = ..., segments: _Optional[int] = ...) -> None: ...

class AllocateSegmentsResponse(_message.Message):
    __slots__ = ["experiment", "namespace"]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    experiment: _types_pb2.Experiment
    namespace: _types_pb2.Namespace
    def __init__(self, namespace: _Optional[_Union[_types_pb2.Namespace, _Mapping]] = ..., experiment: _Optional[_Union[_types_pb2.Experiment, _Mapping]] = ...) -> None: ...

class ArchiveExperimentRequest(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class ArchiveExperimentResponse(_message.Message):
    __slots__ = ["experiment"]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _types_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_types_pb2.Experiment, _Mapping]] = ...) -> None: ...

class ArchiveNamespaceRequest(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class ArchiveNamespaceResponse(_message.Message):
    __slots__ = ["namespace"]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: _types_pb2.Namespace
    def __init__(self, namespace: _Optional[_Union[_types_pb2.Namespace, _Mapping]] = ...) -> None: ...

class AssignmentEvent(_message.Message):
    __slots__ = ["experiment_key", "experiment_version", "kind", "position", "source", "time", "unit_id", "unit_type", "variant_key"]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_KEY_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    experiment_version: int
    kind: AssignmentEventKind
    position: int
    source: _types_pb2.Source
    time: _timestamp_pb2.Timestamp
    unit_id: str
    unit_type: str
    variant_key: str
    def __init__(self, position: _Optional[int] = ..., kind: _Optional[_Union[AssignmentEventKind, str]] = ..., experiment_key: _Optional[str] = ..., unit_type: _Optional[str] = ..., unit_id: _Optional[str] = ..., variant_key: _Optional[str] = ..., source: _Optional[_Union[_types_pb2.Source, str]] = ..., experiment_version: _Optional[int] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ["fields", "id", "object_key", "object_kind", "rpc", "time", "token_name", "token_role", "version_after", "version_before"]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KIND_FIELD_NUMBER: _ClassVar[int]
    RPC_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ROLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_AFTER_FIELD_NUMBER: _ClassVar[int]
    VERSION_BEFORE_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedCompositeFieldContainer[FieldChange]
    id: int
    object_key: str
    object_kind: str
    rpc: str
    time: _timestamp_pb2.Timestamp
    token_name: str
    token_role: str
    version_after: int
    version_before: int
    def __init__(self, id: _Optional[int] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., token_name: _Optional[str] = ..., token_role: _Optional[str] = ..., rpc: _Optional[str] = ..., object_kind: _Optional[str] = ..., object_key: _Optional[str] = ..., version_before: _Optional[int] = ..., version_after: _Optional[int] = ..., fields: _Optional[_Iterable[_Union[FieldChange, _Mapping]]] = ...) -> None: ...

class ClearOverridesRequest(_message.Message):
    __slots__ = ["all", "experiment_key", "unit_ids"]
    ALL_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    all: bool
    experiment_key: str
    unit_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, experiment_key: _Optional[str] = ..., unit_ids: _Optional[_Iterable[str]] = ..., all: bool = ...) -> None: ...

class ClearOverridesResponse(_message.Message):
    __slots__ = ["count", "experiment_version"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    count: int
    experiment_version: int
    def __init__(self, count: _Optional[int] = ..., experiment_version: _Optional[int] = ...) -> None: ...

class CopyAssignmentsRequest(_message.Message):
    __slots__ = ["batch_size", "source_experiment_key", "target_experiment_key", "variant_mapping"]
    class VariantMappingEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    TARGET_EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    VARIANT_MAPPING_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    source_experiment_key: str
    target_experiment_key: str
    variant_mapping: _containers.ScalarMap[str, str]
    def __init__(self, source_experiment_key: _Optional[str] = ..., target_experiment_key: _Optional[str] = ..., variant_mapping: _Optional[_Mapping[str, str]] = ..., batch_size: _Optional[int] = ...) -> None: ...

class CopyAssignmentsResponse(_message.Message):
    __slots__ = ["copied", "done", "scanned", "skipped", "total"]
    COPIED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    SCANNED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    copied: int
    done: bool
    scanned: int
    skipped: int
    total: int
    def __init__(self, scanned: _Optional[int] = ..., copied: _Optional[int] = ..., skipped: _Optional[int] = ..., total: _Optional[int] = ..., done: bool = ...) -> None: ...

class CreateExperimentRequest(_message.Message):
    __slots__ = ["condition", "default_variant", "description", "key", "rollout", "salt", "status", "tags", "unit_type", "variants"]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VARIANT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    condition: str
    default_variant: str
    description: str
    key: str
    rollout: int
    salt: str
    status: _types_pb2.ExperimentStatus
    tags: _containers.RepeatedScalarFieldContainer[str]
    unit_type: str
    variants: _containers.RepeatedCompositeFieldContainer[_types_pb2.Variant]
    def __init__(self, key: _Optional[str] = ..., salt: _Optional[str] = ..., unit_type: _Optional[str] = ..., variants: _Optional[_Iterable[_Union[_types_pb2.Variant, _Mapping]]] = ..., rollout: _Optional[int] = ..., status: _Optional[_Union[_types_pb2.ExperimentStatus, str]] = ..., default_variant: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., condition: _Optional[str] = ...) -> None: ...

class CreateExperimentResponse(_message.Message):
    __slots__ = ["experiment"]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _types_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_types_pb2.Experiment, _Mapping]] = ...) -> None: ...

class CreateHoldoutRequest(_message.Message):
    __slots__ = ["key", "salt", "share", "tags", "unit_type"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    key: str
    salt: str
    share: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    unit_type: str
    def __init__(self, key: _Optional[str] = ..., salt: _Optional[str] = ..., unit_type: _Optional[str] = ..., share: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateHoldoutResponse(_message.Message):
    __slots__ = ["holdout"]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    holdout: _types_pb2.Holdout
    def __init__(self, holdout: _Optional[_Union[_types_pb2.Holdout, _Mapping]] = ...) -> None: ...

class CreateNamespaceRequest(_message.Message):
    __slots__ = ["default_params", "key", "salt", "segments", "unit_type"]
    DEFAULT_PARAMS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    default_params: _struct_pb2.Struct
    key: str
    salt: str
    segments: int
    unit_type: str
    def __init__(self, key: _Optional[str] = ..., salt: _Optional[str] = ..., unit_type: _Optional[str] = ..., segments: _Optional[int] = ..., default_params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CreateNamespaceResponse(_message.Message):
    __slots__ = ["namespace"]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: _types_pb2.Namespace
    def __init__(self, namespace: _Optional[_Union[_types_pb2.Namespace, _Mapping]] = ...) -> None: ...

class EraseUnitsRequest(_message.Message):
    __slots__ = ["unit_ids", "unit_type"]
    UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    unit_ids: _containers.RepeatedScalarFieldContainer[str]
    unit_type: str
    def __init__(self, unit_type: _Optional[str] = ..., unit_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class EraseUnitsResponse(_message.Message):
    __slots__ = ["assignments", "experiments", "overrides"]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    assignments: int
    experiments: int
    overrides: int
    def __init__(self, assignments: _Optional[int] = ..., overrides: _Optional[int] = ..., experiments: _Optional[int] = ...) -> None: ...

class ExportAssignmentsRequest(_message.Message):
    __slots__ = ["batch_size", "experiment_key"]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    experiment_key: str
    def __init__(self, experiment_key: _Optional[str] = ..., batch_size: _Optional[int] = ...) -> None: ...

class ExportAssignmentsResponse(_message.Message):
    __slots__ = ["experiment_key", "legend", "sources", "unit_ids", "variant_indexes", "versions"]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    LEGEND_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_INDEXES_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    legend: _containers.RepeatedScalarFieldContainer[str]
    sources: _containers.RepeatedScalarFieldContainer[_types_pb2.Source]
    unit_ids: _containers.RepeatedScalarFieldContainer[str]
    variant_indexes: _containers.RepeatedScalarFieldContainer[int]
    versions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, experiment_key: _Optional[str] = ..., legend: _Optional[_Iterable[str]] = ..., unit_ids: _Optional[_Iterable[str]] = ..., variant_indexes: _Optional[_Iterable[int]] = ..., sources: _Optional[_Iterable[_Union[_types_pb2.Source, str]]] = ..., versions: _Optional[_Iterable[int]] = ...) -> None: ...

class FieldChange(_message.Message):
    __slots__ = ["after", "before", "field"]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    after: _struct_pb2.Value
    before: _struct_pb2.Value
    field: str
    def __init__(self, field: _Optional[str] = ..., before: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., after: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class GetExperimentRequest(_message.Message):
    __slots__ = ["key", "version"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key: str
    version: int
    def __init__(self, key: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetExperimentResponse(_message.Message):
    __slots__ = ["experiment"]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _types_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_types_pb2.Experiment, _Mapping]] = ...) -> None: ...

class GetExperimentStatsRequest(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class GetExperimentStatsResponse(_message.Message):
    __slots__ = ["chi_square", "degrees_of_freedom", "experiment_key", "experiment_version", "p_value", "sample_ratio_mismatch", "total_units", "variants"]
    CHI_SQUARE_FIELD_NUMBER: _ClassVar[int]
    DEGREES_OF_FREEDOM_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATIO_MISMATCH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_UNITS_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    chi_square: float
    degrees_of_freedom: int
    experiment_key: str
    experiment_version: int
    p_value: float
    sample_ratio_mismatch: bool
    total_units: int
    variants: _containers.RepeatedCompositeFieldContainer[VariantStats]
    def __init__(self, experiment_key: _Optional[str] = ..., experiment_version: _Optional[int] = ..., variants: _Optional[_Iterable[_Union[VariantStats, _Mapping]]] = ..., total_units: _Optional[int] = ..., chi_square: _Optional[float] = ..., degrees_of_freedom: _Optional[int] = ..., p_value: _Optional[float] = ..., sample_ratio_mismatch: bool = ...) -> None: ...

class GetHoldoutRequest(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class GetHoldoutResponse(_message.Message):
    __slots__ = ["holdout"]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    holdout: _types_pb2.Holdout
    def __init__(self, holdout: _Optional[_Union[_types_pb2.Holdout, _Mapping]] = ...) -> None: ...

class GetHoldoutStatsRequest(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class GetHoldoutStatsResponse(_message.Message):
    __slots__ = ["experiments", "holdout_key", "share"]
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_KEY_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    experiments: _containers.RepeatedCompositeFieldContainer[HoldoutExperimentStats]
    holdout_key: str
    share: int
    def __init__(self, holdout_key: _Optional[str] = ..., share: _Optional[int] = ..., experiments: _Optional[_Iterable[_Union[HoldoutExperimentStats, _Mapping]]] = ...) -> None: ...

class GetNamespaceRequest(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class GetNamespaceResponse(_message.Message):
    __slots__ = ["namespace"]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: _types_pb2.Namespace
    def __init__(self, namespace: _Optional[_Union[_types_pb2.Namespace, _Mapping]] = ...) -> None: ...

class HoldoutExperimentStats(_message.Message):
    __slots__ = ["experiment_key", "exposed", "held_out"]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPOSED_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    exposed: int
    held_out: int
    def __init__(self, experiment_key: _Optional[str] = ..., held_out: _Optional[int] = ..., exposed: _Optional[int] = ...) -> None: ...

class ImportAssignmentsRequest(_message.Message):
    __slots__ = ["rows", "setup"]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SETUP_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[ImportRow]
    setup: ImportSetup
    def __init__(self, setup: _Optional[_Union[ImportSetup, _Mapping]] = ..., rows: _Optional[_Iterable[_Union[ImportRow, _Mapping]]] = ...) -> None: ...

class ImportAssignmentsResponse(_message.Message):
    __slots__ = ["errors", "imported", "invalid", "received", "skipped"]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    INVALID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    errors: _containers.RepeatedCompositeFieldContainer[ImportRowError]
    imported: int
    invalid: int
    received: int
    skipped: int
    def __init__(self, received: _Optional[int] = ..., imported: _Optional[int] = ..., skipped: _Optional[int] = ..., invalid: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[ImportRowError, _Mapping]]] = ...) -> None: ...

class ImportRow(_message.Message):
    __slots__ = ["experiment_key", "unit_id", "variant_key"]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_KEY_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    unit_id: str
    variant_key: str
    def __init__(self, experiment_key: _Optional[str] = ..., unit_id: _Optional[str] = ..., variant_key: _Optional[str] = ...) -> None: ...

class ImportRowError(_message.Message):
    __slots__ = ["message", "position"]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    message: str
    position: int
    def __init__(self, position: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ImportSetup(_message.Message):
    __slots__ = ["policy", "skip_invalid"]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    SKIP_INVALID_FIELD_NUMBER: _ClassVar[int]
    policy: ImportPolicy
    skip_invalid: bool
    def __init__(self, policy: _Optional[_Union[ImportPolicy, str]] = ..., skip_invalid: bool = ...) -> None: ...

class ListChangesRequest(_message.Message):
    __slots__ = ["object_key", "object_kind", "page_size", "page_token", "since", "token_name", "until"]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KIND_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_NAME_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    object_key: str
    object_kind: str
    page_size: int
    page_token: str
    since: _timestamp_pb2.Timestamp
    token_name: str
    until: _timestamp_pb2.Timestamp
    def __init__(self, object_kind: _Optional[str] = ..., object_key: _Optional[str] = ..., token_name: _Optional[str] = ..., since: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListChangesResponse(_message.Message):
    __slots__ = ["changes", "next_page_token"]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    next_page_token: str
    def __init__(self, changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListExperimentsRequest(_message.Message):
    __slots__ = ["include_archived", "namespace", "status", "tag"]
    INCLUDE_ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    include_archived: bool
    namespace: str
    status: _types_pb2.ExperimentStatus
    tag: str
    def __init__(self, status: _Optional[_Union[_types_pb2.ExperimentStatus, str]] = ..., tag: _Optional[str] = ..., namespace: _Optional[str] = ..., include_archived: bool = ...) -> None: ...

class ListExperimentsResponse(_message.Message):
    __slots__ = ["experiments"]
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    experiments: _containers.RepeatedCompositeFieldContainer[_types_pb2.Experiment]
    def __init__(self, experiments: _Optional[_Iterable[_Union[_types_pb2.Experiment, _Mapping]]] = ...) -> None: ...

class ListHoldoutsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListHoldoutsResponse(_message.Message):
    __slots__ = ["holdouts"]
    HOLDOUTS_FIELD_NUMBER: _ClassVar[int]
    holdouts: _containers.RepeatedCompositeFieldContainer[_types_pb2.Holdout]
    def __init__(self, holdouts: _Optional[_Iterable[_Union[_types_pb2.Holdout, _Mapping]]] = ...) -> None: ...

class ListNamespacesRequest(_message.Message):
    __slots__ = ["include_archived"]
    INCLUDE_ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    include_archived: bool
    def __init__(self, include_archived: bool = ...) -> None: ...

class ListNamespacesResponse(_message.Message):
    __slots__ = ["namespaces"]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[_types_pb2.Namespace]
    def __init__(self, namespaces: _Optional[_Iterable[_Union[_types_pb2.Namespace, _Mapping]]] = ...) -> None: ...

class ListOverridesRequest(_message.Message):
    __slots__ = ["experiment_key", "page_size", "page_token"]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    page_size: int
    page_token: str
    def __init__(self, experiment_key: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOverridesResponse(_message.Message):
    __slots__ = ["next_page_token", "overrides"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    overrides: _containers.RepeatedCompositeFieldContainer[ListedOverride]
    def __init__(self, overrides: _Optional[_Iterable[_Union[ListedOverride, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListedOverride(_message.Message):
    __slots__ = ["experiment_key", "experiment_version", "set_time", "unit_id", "variant_key"]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SET_TIME_FIELD_NUMBER: _ClassVar[int]
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_KEY_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    experiment_version: int
    set_time: _timestamp_pb2.Timestamp
    unit_id: str
    variant_key: str
    def __init__(self, experiment_key: _Optional[str] = ..., unit_id: _Optional[str] = ..., variant_key: _Optional[str] = ..., experiment_version: _Optional[int] = ..., set_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Override(_message.Message):
    __slots__ = ["unit_id", "variant_key"]
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_KEY_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    variant_key: str
    def __init__(self, unit_id: _Optional[str] = ..., variant_key: _Optional[str] = ...) -> None: ...

class ReleaseSegmentsRequest(_message.Message):
    __slots__ = ["experiment_key", "namespace_key"]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_KEY_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    namespace_key: str
    def __init__(self, namespace_key: _Optional[str] = ..., experiment_key: _Optional[str] = ...) -> None: ...

class ReleaseSegmentsResponse(_message.Message):
    __slots__ = ["experiment", "namespace", "released"]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    experiment: _types_pb2.Experiment
    namespace: _types_pb2.Namespace
    released: int
    def __init__(self, namespace: _Optional[_Union[_types_pb2.Namespace, _Mapping]] = ..., experiment: _Optional[_Union[_types_pb2.Experiment, _Mapping]] = ..., released: _Optional[int] = ...) -> None: ...

class SetOverridesRequest(_message.Message):
    __slots__ = ["experiment_key", "overrides"]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    overrides: _containers.RepeatedCompositeFieldContainer[Override]
    def __init__(self, experiment_key: _Optional[str] = ..., overrides: _Optional[_Iterable[_Union[Override, _Mapping]]] = ...) -> None: ...

class SetOverridesResponse(_message.Message):
    __slots__ = ["count", "experiment_version"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    count: int
    experiment_version: int
    def __init__(self, count: _Optional[int] = ..., experiment_version: _Optional[int] = ...) -> None: ...

class TagList(_message.Message):
    __slots__ = ["tags"]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tags: _Optional[_Iterable[str]] = ...) -> None: ...

class UnarchiveExperimentRequest(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class UnarchiveExperimentResponse(_message.Message):
    __slots__ = ["experiment"]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _types_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_types_pb2.Experiment, _Mapping]] = ...) -> None: ...

class UnarchiveNamespaceRequest(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class UnarchiveNamespaceResponse(_message.Message):
    __slots__ = ["namespace"]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: _types_pb2.Namespace
    def __init__(self, namespace: _Optional[_Union[_types_pb2.Namespace, _Mapping]] = ...) -> None: ...

class UpdateExperimentRequest(_message.Message):
    __slots__ = ["condition", "default_variant", "description", "key", "rollout", "status", "tags", "variants", "version", "winner"]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VARIANT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WINNER_FIELD_NUMBER: _ClassVar[int]
    condition: str
    default_variant: str
    description: str
    key: str
    rollout: int
    status: _types_pb2.ExperimentStatus
    tags: TagList
    variants: VariantList
    version: int
    winner: str
    def __init__(self, key: _Optional[str] = ..., version: _Optional[int] = ..., variants: _Optional[_Union[VariantList, _Mapping]] = ..., rollout: _Optional[int] = ..., status: _Optional[_Union[_types_pb2.ExperimentStatus, str]] = ..., winner: _Optional[str] = ..., default_variant: _Optional[str] = ..., tags: _Optional[_Union[TagList, _Mapping]] = ..., description: _Optional[str] = ..., condition: _Optional[str] = ...) -> None: ...

class UpdateExperimentResponse(_message.Message):
    __slots__ = ["experiment"]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _types_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_types_pb2.Experiment, _Mapping]] = ...) -> None: ...

class UpdateHoldoutRequest(_message.Message):
    __slots__ = ["key", "salt", "share", "tags", "unit_type", "version"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key: str
    salt: str
    share: int
    tags: TagList
    unit_type: str
    version: int
    def __init__(self, key: _Optional[str] = ..., share: _Optional[int] = ..., tags: _Optional[_Union[TagList, _Mapping]] = ..., salt: _Optional[str] = ..., unit_type: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class UpdateHoldoutResponse(_message.Message):
    __slots__ = ["holdout"]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    holdout: _types_pb2.Holdout
    def __init__(self, holdout: _Optional[_Union[_types_pb2.Holdout, _Mapping]] = ...) -> None: ...

class UpdateNamespaceRequest(_message.Message):
    __slots__ = ["default_params", "key", "version"]
    DEFAULT_PARAMS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    default_params: _struct_pb2.Struct
    key: str
    version: int
    def __init__(self, key: _Optional[str] = ..., default_params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class UpdateNamespaceResponse(_message.Message):
    __slots__ = ["namespace"]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: _types_pb2.Namespace
    def __init__(self, namespace: _Optional[_Union[_types_pb2.Namespace, _Mapping]] = ...) -> None: ...

class VariantList(_message.Message):
    __slots__ = ["variants"]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    variants: _containers.RepeatedCompositeFieldContainer[_types_pb2.Variant]
    def __init__(self, variants: _Optional[_Iterable[_Union[_types_pb2.Variant, _Mapping]]] = ...) -> None: ...

class VariantStats(_message.Message):
    __slots__ = ["expected_share", "imported", "observed_share", "overrides", "units", "variant_key"]
    EXPECTED_SHARE_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_SHARE_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_KEY_FIELD_NUMBER: _ClassVar[int]
    expected_share: float
    imported: int
    observed_share: float
    overrides: int
    units: int
    variant_key: str
    def __init__(self, variant_key: _Optional[str] = ..., units: _Optional[int] = ..., expected_share: _Optional[float] = ..., observed_share: _Optional[float] = ..., overrides: _Optional[int] = ..., imported: _Optional[int] = ...) -> None: ...

class WatchAssignmentsRequest(_message.Message):
    __slots__ = ["after_position", "experiment_keys", "from_now", "from_oldest", "max_batch", "stop_when_caught_up"]
    AFTER_POSITION_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_KEYS_FIELD_NUMBER: _ClassVar[int]
    FROM_NOW_FIELD_NUMBER: _ClassVar[int]
    FROM_OLDEST_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    STOP_WHEN_CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    after_position: int
    experiment_keys: _containers.RepeatedScalarFieldContainer[str]
    from_now: bool
    from_oldest: bool
    max_batch: int
    stop_when_caught_up: bool
    def __init__(self, after_position: _Optional[int] = ..., from_now: bool = ..., from_oldest: bool = ..., experiment_keys: _Optional[_Iterable[str]] = ..., max_batch: _Optional[int] = ..., stop_when_caught_up: bool = ...) -> None: ...

class WatchAssignmentsResponse(_message.Message):
    __slots__ = ["events", "position"]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AssignmentEvent]
    position: int
    def __init__(self, events: _Optional[_Iterable[_Union[AssignmentEvent, _Mapping]]] = ..., position: _Optional[int] = ...) -> None: ...

class AssignmentEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ImportPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
