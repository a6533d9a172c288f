from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Cohort(_message.Message):
    __slots__ = ["create_time", "created_by", "has_attributes", "has_variants", "name", "size", "unit_type", "variant_keys"]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    HAS_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    HAS_VARIANTS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_KEYS_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    created_by: str
    has_attributes: bool
    has_variants: bool
    name: str
    size: int
    unit_type: str
    variant_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., unit_type: _Optional[str] = ..., size: _Optional[int] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ..., has_variants: bool = ..., variant_keys: _Optional[_Iterable[str]] = ..., has_attributes: bool = ...) -> None: ...

class DeleteCohortRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteCohortResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ExportCohortRequest(_message.Message):
    __slots__ = ["batch_size", "name"]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    name: str
    def __init__(self, name: _Optional[str] = ..., batch_size: _Optional[int] = ...) -> None: ...

class ExportCohortResponse(_message.Message):
    __slots__ = ["unit_ids"]
    UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    unit_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, unit_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetCohortRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetCohortResponse(_message.Message):
    __slots__ = ["cohort"]
    COHORT_FIELD_NUMBER: _ClassVar[int]
    cohort: Cohort
    def __init__(self, cohort: _Optional[_Union[Cohort, _Mapping]] = ...) -> None: ...

class ListCohortsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListCohortsResponse(_message.Message):
    __slots__ = ["cohorts"]
    COHORTS_FIELD_NUMBER: _ClassVar[int]
    cohorts: _containers.RepeatedCompositeFieldContainer[Cohort]
    def __init__(self, cohorts: _Optional[_Iterable[_Union[Cohort, _Mapping]]] = ...) -> None: ...

class UploadCohortRequest(_message.Message):
    __slots__ = ["setup", "unit_attributes", "unit_ids", "variant_keys"]
    SETUP_FIELD_NUMBER: _ClassVar[int]
    UNIT_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    UNIT_IDS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_KEYS_FIELD_NUMBER: _ClassVar[int]
    setup: UploadCohortSetup
    unit_attributes: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    unit_ids: _containers.RepeatedScalarFieldContainer[str]
    variant_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, setup: _Optional[_Union[UploadCohortSetup, _Mapping]] = ..., unit_ids: _Optional[_Iterable[str]] = ..., variant_keys: _Optional[_Iterable[str]] = ..., unit_attributes: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ...) -> None: ...

class UploadCohortResponse(_message.Message):
    __slots__ = ["cohort", "duplicates", "received"]
    COHORT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    cohort: Cohort
    duplicates: int
    received: int
    def __init__(self, cohort: _Optional[_Union[Cohort, _Mapping]] = ..., received: _Optional[int] = ..., duplicates: _Optional[int] = ...) -> None: ...

class UploadCohortSetup(_message.Message):
    __slots__ = ["name", "replace", "unit_type", "with_variants"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    UNIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WITH_VARIANTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    replace: bool
    unit_type: str
    with_variants: bool
    def __init__(self, name: _Optional[str] = ..., unit_type: _Optional[str] = ..., replace: bool = ..., with_variants: bool = ...) -> None: ...
