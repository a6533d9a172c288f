from assignment.v1 import types_pb2 as _types_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AssignRequest(_message.Message):
    __slots__ = ["attributes", "experiment_key", "options", "unit_id", "unit_type"]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    attributes: _struct_pb2.Struct
    experiment_key: str
    options: _types_pb2.AssignOptions
    unit_id: str
    unit_type: str
    def __init__(self, experiment_key: _Optional[str] = ..., unit_id: _Optional[str] = ..., unit_type: _Optional[str] = ..., options: _Optional[_Union[_types_pb2.AssignOptions, _Mapping]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class AssignResponse(_message.Message):
    __slots__ = ["assignment"]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    assignment: _types_pb2.Assignment
    def __init__(self, assignment: _Optional[_Union[_types_pb2.Assignment, _Mapping]] = ...) -> None: ...

class AssignUnitRequest(_message.Message):
    __slots__ = ["attributes", "experiment_keys", "options", "tag", "units"]
    class UnitsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_KEYS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    attributes: _struct_pb2.Struct
    experiment_keys: _containers.RepeatedScalarFieldContainer[str]
    options: _types_pb2.AssignOptions
    tag: str
    units: _containers.ScalarMap[str, str]
    def __init__(self, units: _Optional[_Mapping[str, str]] = ..., experiment_keys: _Optional[_Iterable[str]] = ..., tag: _Optional[str] = ..., options: _Optional[_Union[_types_pb2.AssignOptions, _Mapping]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class AssignUnitResponse(_message.Message):
    __slots__ = ["assignments"]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[_types_pb2.Assignment]
    def __init__(self, assignments: _Optional[_Iterable[_Union[_types_pb2.Assignment, _Mapping]]] = ...) -> None: ...

class BulkAssignRequest(_message.Message):
    __slots__ = ["attributes", "experiment_key", "options", "unit_attributes", "unit_ids", "unit_type"]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    UNIT_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    attributes: _struct_pb2.Struct
    experiment_key: str
    options: _types_pb2.AssignOptions
    unit_attributes: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    unit_ids: _containers.RepeatedScalarFieldContainer[str]
    unit_type: str
    def __init__(self, experiment_key: _Optional[str] = ..., unit_type: _Optional[str] = ..., unit_ids: _Optional[_Iterable[str]] = ..., options: _Optional[_Union[_types_pb2.AssignOptions, _Mapping]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., unit_attributes: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ...) -> None: ...

class BulkAssignResponse(_message.Message):
    __slots__ = ["column"]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    column: _types_pb2.AssignmentColumn
    def __init__(self, column: _Optional[_Union[_types_pb2.AssignmentColumn, _Mapping]] = ...) -> None: ...

class BulkResolveParamsRequest(_message.Message):
    __slots__ = ["attributes", "namespace_keys", "options", "tag", "unit_attributes", "unit_ids", "unit_type"]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_KEYS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    UNIT_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    attributes: _struct_pb2.Struct
    namespace_keys: _containers.RepeatedScalarFieldContainer[str]
    options: _types_pb2.AssignOptions
    tag: str
    unit_attributes: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    unit_ids: _containers.RepeatedScalarFieldContainer[str]
    unit_type: str
    def __init__(self, unit_type: _Optional[str] = ..., unit_ids: _Optional[_Iterable[str]] = ..., namespace_keys: _Optional[_Iterable[str]] = ..., tag: _Optional[str] = ..., options: _Optional[_Union[_types_pb2.AssignOptions, _Mapping]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., unit_attributes: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ...) -> None: ...

class BulkResolveParamsResponse(_message.Message):
    __slots__ = ["columns"]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[ParamsColumn]
    def __init__(self, columns: _Optional[_Iterable[_Union[ParamsColumn, _Mapping]]] = ...) -> None: ...

class MatrixAssignRequest(_message.Message):
    __slots__ = ["attributes", "experiment_keys", "options", "unit_attributes", "unit_ids", "unit_type"]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_KEYS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    UNIT_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    attributes: _struct_pb2.Struct
    experiment_keys: _containers.RepeatedScalarFieldContainer[str]
    options: _types_pb2.AssignOptions
    unit_attributes: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    unit_ids: _containers.RepeatedScalarFieldContainer[str]
    unit_type: str
    def __init__(self, experiment_keys: _Optional[_Iterable[str]] = ..., unit_type: _Optional[str] = ..., unit_ids: _Optional[_Iterable[str]] = ..., options: _Optional[_Union[_types_pb2.AssignOptions, _Mapping]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., unit_attributes: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ...) -> None: ...

class MatrixAssignResponse(_message.Message):
    __slots__ = ["columns"]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[_types_pb2.AssignmentColumn]
    def __init__(self, columns: _Optional[_Iterable[_Union[_types_pb2.AssignmentColumn, _Mapping]]] = ...) -> None: ...

class ParamsColumn(_message.Message):
    __slots__ = ["enrolled", "legend", "legend_indexes", "namespace_key", "reasons", "stored"]
    ENROLLED_FIELD_NUMBER: _ClassVar[int]
    LEGEND_FIELD_NUMBER: _ClassVar[int]
    LEGEND_INDEXES_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_KEY_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    enrolled: _containers.RepeatedScalarFieldContainer[bool]
    legend: _containers.RepeatedCompositeFieldContainer[ResolvedParamsChoice]
    legend_indexes: _containers.RepeatedScalarFieldContainer[int]
    namespace_key: str
    reasons: _containers.RepeatedScalarFieldContainer[_types_pb2.Reason]
    stored: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, namespace_key: _Optional[str] = ..., legend: _Optional[_Iterable[_Union[ResolvedParamsChoice, _Mapping]]] = ..., legend_indexes: _Optional[_Iterable[int]] = ..., reasons: _Optional[_Iterable[_Union[_types_pb2.Reason, str]]] = ..., enrolled: _Optional[_Iterable[bool]] = ..., stored: _Optional[_Iterable[bool]] = ...) -> None: ...

class ResolveParamsRequest(_message.Message):
    __slots__ = ["attributes", "namespace_keys", "options", "tag", "units"]
    class UnitsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_KEYS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    attributes: _struct_pb2.Struct
    namespace_keys: _containers.RepeatedScalarFieldContainer[str]
    options: _types_pb2.AssignOptions
    tag: str
    units: _containers.ScalarMap[str, str]
    def __init__(self, units: _Optional[_Mapping[str, str]] = ..., namespace_keys: _Optional[_Iterable[str]] = ..., tag: _Optional[str] = ..., options: _Optional[_Union[_types_pb2.AssignOptions, _Mapping]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ResolveParamsResponse(_message.Message):
    __slots__ = ["namespaces"]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[ResolvedParams]
    def __init__(self, namespaces: _Optional[_Iterable[_Union[ResolvedParams, _Mapping]]] = ...) -> None: ...

class ResolvedParams(_message.Message):
    __slots__ = ["enrolled", "experiment_key", "experiment_version", "namespace_key", "params", "reason", "stored", "variant_key"]
    ENROLLED_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_KEY_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    VARIANT_KEY_FIELD_NUMBER: _ClassVar[int]
    enrolled: bool
    experiment_key: str
    experiment_version: int
    namespace_key: str
    params: _struct_pb2.Struct
    reason: _types_pb2.Reason
    stored: bool
    variant_key: str
    def __init__(self, namespace_key: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., experiment_key: _Optional[str] = ..., variant_key: _Optional[str] = ..., reason: _Optional[_Union[_types_pb2.Reason, str]] = ..., enrolled: bool = ..., stored: bool = ..., experiment_version: _Optional[int] = ...) -> None: ...

class ResolvedParamsChoice(_message.Message):
    __slots__ = ["experiment_key", "experiment_version", "params", "variant_key"]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_KEY_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    experiment_version: int
    params: _struct_pb2.Struct
    variant_key: str
    def __init__(self, params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., experiment_key: _Optional[str] = ..., variant_key: _Optional[str] = ..., experiment_version: _Optional[int] = ...) -> None: ...

class StreamAssignRequest(_message.Message):
    __slots__ = ["setup", "unit_attributes", "unit_ids"]
    SETUP_FIELD_NUMBER: _ClassVar[int]
    UNIT_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    setup: StreamAssignSetup
    unit_attributes: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    unit_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, setup: _Optional[_Union[StreamAssignSetup, _Mapping]] = ..., unit_ids: _Optional[_Iterable[str]] = ..., unit_attributes: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ...) -> None: ...

class StreamAssignResponse(_message.Message):
    __slots__ = ["batch", "columns"]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    batch: int
    columns: _containers.RepeatedCompositeFieldContainer[_types_pb2.AssignmentColumn]
    def __init__(self, batch: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[_types_pb2.AssignmentColumn, _Mapping]]] = ...) -> None: ...

class StreamAssignSetup(_message.Message):
    __slots__ = ["attributes", "experiment_keys", "options", "unit_type"]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_KEYS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    attributes: _struct_pb2.Struct
    experiment_keys: _containers.RepeatedScalarFieldContainer[str]
    options: _types_pb2.AssignOptions
    unit_type: str
    def __init__(self, experiment_keys: _Optional[_Iterable[str]] = ..., unit_type: _Optional[str] = ..., options: _Optional[_Union[_types_pb2.AssignOptions, _Mapping]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
