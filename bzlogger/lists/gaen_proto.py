"""Protobuf messages of GAEN key exports (``shared/reference/gaen.md``), built at import
time from a descriptor, so that no generated code or ``protoc`` is needed.

The schema is Google's ``export.proto`` (proto2): field numbers, types and defaults are
exactly those of the published files, so the parser is protobuf's own.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "bzlogger.gaen"

# (name, number, type, label, type_name, default)
_Field = tuple[str, int, int, int, str, str]
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED

_MESSAGES: dict[str, list[_Field]] = {
    "TemporaryExposureKeyExport": [
        ("start_timestamp", 1, _F.TYPE_FIXED64, _OPT, "", ""),
        ("end_timestamp", 2, _F.TYPE_FIXED64, _OPT, "", ""),
        ("region", 3, _F.TYPE_STRING, _OPT, "", ""),
        ("batch_num", 4, _F.TYPE_INT32, _OPT, "", ""),
        ("batch_size", 5, _F.TYPE_INT32, _OPT, "", ""),
        ("signature_infos", 6, _F.TYPE_MESSAGE, _REP, "SignatureInfo", ""),
        ("keys", 7, _F.TYPE_MESSAGE, _REP, "TemporaryExposureKey", ""),
        ("revised_keys", 8, _F.TYPE_MESSAGE, _REP, "TemporaryExposureKey", ""),
    ],
    "SignatureInfo": [
        ("verification_key_version", 3, _F.TYPE_STRING, _OPT, "", ""),
        ("verification_key_id", 4, _F.TYPE_STRING, _OPT, "", ""),
        ("signature_algorithm", 5, _F.TYPE_STRING, _OPT, "", ""),
    ],
    "TemporaryExposureKey": [
        ("key_data", 1, _F.TYPE_BYTES, _OPT, "", ""),
        ("transmission_risk_level", 2, _F.TYPE_INT32, _OPT, "", ""),
        ("rolling_start_interval_number", 3, _F.TYPE_INT32, _OPT, "", ""),
        ("rolling_period", 4, _F.TYPE_INT32, _OPT, "", "144"),
        ("report_type", 5, _F.TYPE_ENUM, _OPT, "ReportType", ""),
        ("days_since_onset_of_symptoms", 6, _F.TYPE_SINT32, _OPT, "", ""),
    ],
    "TEKSignatureList": [
        ("signatures", 1, _F.TYPE_MESSAGE, _REP, "TEKSignature", ""),
    ],
    "TEKSignature": [
        ("signature_info", 1, _F.TYPE_MESSAGE, _OPT, "SignatureInfo", ""),
        ("batch_num", 2, _F.TYPE_INT32, _OPT, "", ""),
        ("batch_size", 3, _F.TYPE_INT32, _OPT, "", ""),
        ("signature", 4, _F.TYPE_BYTES, _OPT, "", ""),
    ],
}

#: TemporaryExposureKey.ReportType
REPORT_TYPES = {
    "UNKNOWN": 0,
    "CONFIRMED_TEST": 1,
    "CONFIRMED_CLINICAL_DIAGNOSIS": 2,
    "SELF_REPORT": 3,
    "RECURSIVE": 4,
    "REVOKED": 5,
}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="bzlogger/gaen_export.proto", package=_PACKAGE, syntax="proto2")
    for name, fields in _MESSAGES.items():
        message = proto.message_type.add(name=name)
        for fname, number, ftype, label, type_name, default in fields:
            field = message.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
            if default:
                field.default_value = default
        if name == "TemporaryExposureKey":
            enum = message.enum_type.add(name="ReportType")
            for value_name, number in REPORT_TYPES.items():
                enum.value.add(name=value_name, number=number)
            message.field[4].type_name = f".{_PACKAGE}.TemporaryExposureKey.ReportType"
        if name == "SignatureInfo":
            message.reserved_range.add(start=1, end=3)
    return proto


def _classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
            for name in _MESSAGES}


_CLASSES = _classes()
#: Message classes (protobuf ``Message`` subclasses; typed ``Any`` as they are built at
#: run time).
TemporaryExposureKeyExport: Any = _CLASSES["TemporaryExposureKeyExport"]
SignatureInfo: Any = _CLASSES["SignatureInfo"]
TemporaryExposureKey: Any = _CLASSES["TemporaryExposureKey"]
TEKSignatureList: Any = _CLASSES["TEKSignatureList"]
TEKSignature: Any = _CLASSES["TEKSignature"]
