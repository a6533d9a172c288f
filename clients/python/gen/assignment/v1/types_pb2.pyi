from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
EXPERIMENT_STATUS_DRAFT: ExperimentStatus
EXPERIMENT_STATUS_PAUSED: ExperimentStatus
EXPERIMENT_STATUS_RUNNING: ExperimentStatus
EXPERIMENT_STATUS_STOPPED: ExperimentStatus
EXPERIMENT_STATUS_UNSPECIFIED: ExperimentStatus
LAYER_COMPUTED: Layer
LAYER_MEMORY: Layer
LAYER_POSTGRES: Layer
LAYER_REDIS: Layer
LAYER_UNSPECIFIED: Layer
REASON_HOLDOUT: Reason
REASON_INVALID_UNIT: Reason
REASON_NEW: Reason
REASON_NOT_IN_NAMESPACE: Reason
REASON_NOT_IN_ROLLOUT: Reason
REASON_NOT_RUNNING: Reason
REASON_NOT_TARGETED: Reason
REASON_OVERRIDE: Reason
REASON_PAUSED: Reason
REASON_STICKY: Reason
REASON_UNIT_TYPE_MISMATCH: Reason
REASON_UNKNOWN_EXPERIMENT: Reason
REASON_UNSPECIFIED: Reason
REASON_WINNER: Reason
SOURCE_HASH: Source
SOURCE_IMPORT: Source
SOURCE_OVERRIDE: Source
SOURCE_UNSPECIFIED: Source

class AssignOptions(_message.Message):
    __slots__ = ["allow_unstored", "dry_run", "explain", "include_params"]
    ALLOW_UNSTORED_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PARAMS_FIELD_NUMBER: _ClassVar[int]
    allow_unstored: bool
    dry_run: bool
    explain: bool
    include_params: bool
    def __init__(self, dry_run: bool = ..., explain: bool = ..., include_params: bool = ..., allow_unstored: bool = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ["enrolled", "experiment_key", "experiment_version", "explanation", "params", "reason", "stored", "variant_key"]
    ENROLLED_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    VARIANT_KEY_FIELD_NUMBER: _ClassVar[int]
    enrolled: bool
    experiment_key: str
    experiment_version: int
    explanation: Explanation
    params: _struct_pb2.Struct
    reason: Reason
    stored: bool
    variant_key: str
    def __init__(self, experiment_key: _Optional[str] = ..., variant_key: _Optional[str] = ..., enrolled: bool = ..., reason: _Optional[_Union[Reason, str]] = ..., stored: bool = ..., experiment_version: _Optional[int] = ..., explanation: _Optional[_Union[Explanation, _Mapping]] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class AssignmentColumn(_message.Message):
    __slots__ = ["enrolled", "experiment_key", "experiment_version", "explanations", "legend", "legend_params", "reasons", "stored", "variant_indexes"]
    ENROLLED_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    LEGEND_FIELD_NUMBER: _ClassVar[int]
    LEGEND_PARAMS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    VARIANT_INDEXES_FIELD_NUMBER: _ClassVar[int]
    enrolled: _containers.RepeatedScalarFieldContainer[bool]
    experiment_key: str
    experiment_version: int
    explanations: _containers.RepeatedCompositeFieldContainer[Explanation]
    legend: _containers.RepeatedScalarFieldContainer[str]
    legend_params: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    reasons: _containers.RepeatedScalarFieldContainer[Reason]
    stored: _containers.RepeatedScalarFieldContainer[bool]
    variant_indexes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, experiment_key: _Optional[str] = ..., experiment_version: _Optional[int] = ..., legend: _Optional[_Iterable[str]] = ..., legend_params: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., variant_indexes: _Optional[_Iterable[int]] = ..., reasons: _Optional[_Iterable[_Union[Reason, str]]] = ..., enrolled: _Optional[_Iterable[bool]] = ..., stored: _Optional[_Iterable[bool]] = ..., explanations: _Optional[_Iterable[_Union[Explanation, _Mapping]]] = ...) -> None: ...

class Experiment(_message.Message):
    __slots__ = ["archive_time", "archived", "condition", "create_time", "default_variant", "description", "hash_version", "key", "namespace", "rollout", "salt", "segments", "status", "tags", "unit_type", "update_time", "variants", "version", "winner"]
    ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VARIANT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    HASH_VERSION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WINNER_FIELD_NUMBER: _ClassVar[int]
    archive_time: _timestamp_pb2.Timestamp
    archived: bool
    condition: str
    create_time: _timestamp_pb2.Timestamp
    default_variant: str
    description: str
    hash_version: int
    key: str
    namespace: str
    rollout: int
    salt: str
    segments: int
    status: ExperimentStatus
    tags: _containers.RepeatedScalarFieldContainer[str]
    unit_type: str
    update_time: _timestamp_pb2.Timestamp
    variants: _containers.RepeatedCompositeFieldContainer[Variant]
    version: int
    winner: str
    def __init__(self, key: _Optional[str] = ..., salt: _Optional[str] = ..., unit_type: _Optional[str] = ..., hash_version: _Optional[int] = ..., variants: _Optional[_Iterable[_Union[Variant, _Mapping]]] = ..., rollout: _Optional[int] = ..., status: _Optional[_Union[ExperimentStatus, str]] = ..., default_variant: _Optional[str] = ..., winner: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., namespace: _Optional[str] = ..., segments: _Optional[int] = ..., version: _Optional[int] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., archived: bool = ..., archive_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., condition: _Optional[str] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ["hash_version", "layer", "rollout_bucket", "segment", "variant_bucket"]
    HASH_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_BUCKET_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    VARIANT_BUCKET_FIELD_NUMBER: _ClassVar[int]
    hash_version: int
    layer: Layer
    rollout_bucket: int
    segment: int
    variant_bucket: int
    def __init__(self, variant_bucket: _Optional[int] = ..., rollout_bucket: _Optional[int] = ..., segment: _Optional[int] = ..., layer: _Optional[_Union[Layer, str]] = ..., hash_version: _Optional[int] = ...) -> None: ...

class Holdout(_message.Message):
    __slots__ = ["create_time", "experiment_keys", "key", "salt", "share", "tags", "unit_type", "update_time", "version"]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_KEYS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    experiment_keys: _containers.RepeatedScalarFieldContainer[str]
    key: str
    salt: str
    share: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    unit_type: str
    update_time: _timestamp_pb2.Timestamp
    version: int
    def __init__(self, key: _Optional[str] = ..., salt: _Optional[str] = ..., unit_type: _Optional[str] = ..., share: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., experiment_keys: _Optional[_Iterable[str]] = ..., version: _Optional[int] = ...) -> None: ...

class Namespace(_message.Message):
    __slots__ = ["allocations", "archive_time", "archived", "create_time", "default_params", "free_segments", "key", "salt", "segments", "unit_type", "version"]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PARAMS_FIELD_NUMBER: _ClassVar[int]
    FREE_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    allocations: _containers.RepeatedCompositeFieldContainer[NamespaceAllocation]
    archive_time: _timestamp_pb2.Timestamp
    archived: bool
    create_time: _timestamp_pb2.Timestamp
    default_params: _struct_pb2.Struct
    free_segments: int
    key: str
    salt: str
    segments: int
    unit_type: str
    version: int
    def __init__(self, key: _Optional[str] = ..., salt: _Optional[str] = ..., unit_type: _Optional[str] = ..., segments: _Optional[int] = ..., free_segments: _Optional[int] = ..., allocations: _Optional[_Iterable[_Union[NamespaceAllocation, _Mapping]]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., archived: bool = ..., archive_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., default_params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class NamespaceAllocation(_message.Message):
    __slots__ = ["experiment_key", "segments"]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    segments: int
    def __init__(self, experiment_key: _Optional[str] = ..., segments: _Optional[int] = ...) -> None: ...

class Variant(_message.Message):
    __slots__ = ["key", "params", "weight"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    key: str
    params: _struct_pb2.Struct
    weight: int
    def __init__(self, key: _Optional[str] = ..., weight: _Optional[int] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class Layer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ExperimentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
