"""The part of ONNX's protobuf messages that shrinkc writes, in plain Python.

``import onnx`` costs more than everything else a cold ``shrinkc compile --target onnx`` does
(0.5 s of CPU here, most of it in ml_dtypes, which onnx imports for its tensor types), so the
backend builds its models with these classes instead: the same message and field names as
``onnx``'s (``NodeProto``, ``GraphProto``, ...), the ``onnx.helper`` functions the backend uses
(``helper.make_node`` ...), each setting the same fields, and ``SerializeToString`` writing the
bytes that protobuf's deterministic serialization writes (fields in number order, proto2
presence: an optional field is written when it was set, even to "" or 0). ``to_onnx`` parses
the bytes into ``onnx.ModelProto`` for what needs the real thing (the fp16 and int8
converters, ``onnx.checker``, the tests). The tests check that the bytes are protobuf's: every
shipped spec's model, written here, parses and re-serializes to the same bytes, and passes
the full checker.

Only the fields shrinkc sets are declared; a message is built, not parsed.
"""

from __future__ import annotations

import numbers
import struct
from collections.abc import Iterable, Sequence
from typing import Any

# --------------------------------------------------------------------------- wire format

_VARINT, _FIXED32, _BYTES = 0, 5, 2


_SMALL = [bytes((i,)) for i in range(0x80)]  # the varints of one byte, made once


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _SMALL[n]
    if n < 0:  # int32 and int64 alike: ten bytes of two's complement
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_KEYS: dict[tuple[int, int], bytes] = {}


def _key(number: int, wire: int) -> bytes:
    key = _KEYS.get((number, wire))
    if key is None:
        key = _KEYS[number, wire] = _varint(number << 3 | wire)
    return key


class _Repeated(list):
    """A repeated field: a list, with ``add()`` for message fields (as protobuf's)."""

    __slots__ = ("kind",)

    def __init__(self, kind: Any, items: Iterable[Any] = ()):
        super().__init__(items)
        self.kind = kind

    def add(self) -> Any:
        self.append(self.kind())
        return self[-1]


class _Message:
    """A protobuf message: ``FIELDS`` is ``(number, name, kind, label)`` with kind ``int``,
    ``float``, ``str``, ``bytes`` or a message class, and label ``opt``, ``rep`` or ``packed``.
    Optional fields start as None (absent); repeated ones as empty lists."""

    FIELDS: tuple[tuple[int, str, Any, str], ...] = ()
    __slots__ = ()

    def __init__(self, **values: Any):
        for _, name, kind, label in self.FIELDS:
            object.__setattr__(self, name, None if label == "opt" else _Repeated(kind))
        for name, value in values.items():
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._names():
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        old = getattr(self, name)
        if isinstance(old, _Repeated):  # assigning a repeated field copies the items
            value = _Repeated(old.kind, value)
        object.__setattr__(self, name, value)

    @classmethod
    def _names(cls) -> frozenset[str]:
        names = cls.__dict__.get("_NAMES")
        if names is None:
            names = frozenset(f[1] for f in cls.FIELDS)
            cls._NAMES = names  # type: ignore[attr-defined]
        return names

    def SerializeToString(self, deterministic: bool = True) -> bytes:  # noqa: N802 - protobuf's
        out: list[bytes] = []
        self._write(out)
        return b"".join(out)  # the one copy of the weights' bytes

    def _write(self, out: list[bytes]) -> int:
        """Append the encoded fields to ``out`` (in field-number order, as declared); return
        how many bytes that was. Nested messages append their parts too, so the weights are
        copied once, by the final join."""
        size = 0
        for number, name, kind, label in self.FIELDS:
            value = getattr(self, name)
            if label == "opt":
                if value is not None:
                    size += _write_one(out, number, kind, value)
            elif label == "rep":
                for item in value:
                    size += _write_one(out, number, kind, item)
            elif value:  # packed
                if kind is float:
                    payload = struct.pack(f"<{len(value)}f", *value)
                else:
                    payload = b"".join(_varint(int(v)) for v in value)
                size += _write_bytes(out, number, payload)
        return size


def _write_bytes(out: list[bytes], number: int, payload: bytes | memoryview) -> int:
    size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
    head = _key(number, _BYTES) + _varint(size)
    out.append(head)
    out.append(payload)  # a memoryview (raw weights) is copied by the final join only
    return len(head) + size


def _write_one(out: list[bytes], number: int, kind: Any, value: Any) -> int:
    if kind is int:
        data = _key(number, _VARINT) + _varint(int(value))
    elif kind is float:
        data = _key(number, _FIXED32) + struct.pack("<f", value)
    elif kind is str:
        return _write_bytes(out, number, value.encode("utf-8"))
    elif kind is bytes:
        return _write_bytes(out, number, value if isinstance(value, memoryview) else bytes(value))
    else:  # a message: its length, then its parts
        parts: list[bytes] = []
        size = value._write(parts)
        head = _key(number, _BYTES) + _varint(size)
        out.append(head)
        out.extend(parts)
        return len(head) + size
    out.append(data)
    return len(data)


def _message(name: str, fields: Sequence[tuple[int, str, Any, str]]) -> type[_Message]:
    ordered = tuple(sorted(fields))
    return type(name, (_Message,), {"FIELDS": ordered, "__slots__": tuple(f[1] for f in ordered)})


# --------------------------------------------------------------------------- the messages

StringStringEntryProto = _message("StringStringEntryProto", [
    (1, "key", str, "opt"), (2, "value", str, "opt")])
OperatorSetIdProto = _message("OperatorSetIdProto", [
    (1, "domain", str, "opt"), (2, "version", int, "opt")])


class TensorProto(_message("_Tensor", [
        (1, "dims", int, "rep"), (2, "data_type", int, "opt"),
        (4, "float_data", float, "packed"), (5, "int32_data", int, "packed"),
        (7, "int64_data", int, "packed"), (8, "name", str, "opt"), (9, "raw_data", bytes, "opt"),
        (12, "doc_string", str, "opt")])):
    __slots__ = ()
    UNDEFINED, FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64 = range(8)
    BOOL, FLOAT16, DOUBLE = 9, 10, 11


Dimension = _message("Dimension", [(1, "dim_value", int, "opt"), (2, "dim_param", str, "opt")])
TensorShapeProto = _message("TensorShapeProto", [(1, "dim", Dimension, "rep")])
TensorTypeProto = _message("TensorTypeProto", [
    (1, "elem_type", int, "opt"), (2, "shape", TensorShapeProto, "opt")])
TypeProto = _message("TypeProto", [(1, "tensor_type", TensorTypeProto, "opt")])
ValueInfoProto = _message("ValueInfoProto", [
    (1, "name", str, "opt"), (2, "type", TypeProto, "opt"), (3, "doc_string", str, "opt")])


class GraphProto(_Message):  # fields below: it refers to NodeProto, which refers to it
    __slots__ = ("node", "name", "initializer", "doc_string", "input", "output", "value_info")


class AttributeProto(_Message):
    __slots__ = ("name", "f", "i", "s", "t", "g", "floats", "ints", "strings", "doc_string",
                 "type", "ref_attr_name")
    UNDEFINED, FLOAT, INT, STRING, TENSOR, GRAPH, FLOATS, INTS, STRINGS = range(9)
    FIELDS = ((1, "name", str, "opt"), (2, "f", float, "opt"), (3, "i", int, "opt"),
              (4, "s", bytes, "opt"), (5, "t", TensorProto, "opt"), (6, "g", GraphProto, "opt"),
              (7, "floats", float, "rep"), (8, "ints", int, "rep"), (9, "strings", bytes, "rep"),
              (13, "doc_string", str, "opt"), (20, "type", int, "opt"),
              (21, "ref_attr_name", str, "opt"))


NodeProto = _message("NodeProto", [
    (1, "input", str, "rep"), (2, "output", str, "rep"), (3, "name", str, "opt"),
    (4, "op_type", str, "opt"), (5, "attribute", AttributeProto, "rep"),
    (6, "doc_string", str, "opt"), (7, "domain", str, "opt"), (8, "overload", str, "opt")])

GraphProto.FIELDS = (
    (1, "node", NodeProto, "rep"), (2, "name", str, "opt"), (5, "initializer", TensorProto, "rep"),
    (10, "doc_string", str, "opt"), (11, "input", ValueInfoProto, "rep"),
    (12, "output", ValueInfoProto, "rep"), (13, "value_info", ValueInfoProto, "rep"))

FunctionProto = _message("FunctionProto", [
    (1, "name", str, "opt"), (4, "input", str, "rep"), (5, "output", str, "rep"),
    (6, "attribute", str, "rep"), (7, "node", NodeProto, "rep"), (8, "doc_string", str, "opt"),
    (9, "opset_import", OperatorSetIdProto, "rep"), (10, "domain", str, "opt"),
    (11, "attribute_proto", AttributeProto, "rep"), (12, "value_info", ValueInfoProto, "rep"),
    (13, "overload", str, "opt")])

ModelProto = _message("ModelProto", [
    (1, "ir_version", int, "opt"), (2, "producer_name", str, "opt"),
    (3, "producer_version", str, "opt"), (4, "domain", str, "opt"),
    (5, "model_version", int, "opt"), (6, "doc_string", str, "opt"),
    (7, "graph", GraphProto, "opt"), (8, "opset_import", OperatorSetIdProto, "rep"),
    (14, "metadata_props", StringStringEntryProto, "rep"),
    (25, "functions", FunctionProto, "rep")])


# --------------------------------------------------------------------------- onnx.helper


def _to_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


class helper:  # noqa: N801 - stands for the module ``onnx.helper``
    """The functions of ``onnx.helper`` that the backend calls, setting the same fields."""

    @staticmethod
    def make_attribute(key: str, value: Any) -> AttributeProto:
        a = AttributeProto(name=key)
        if isinstance(value, numbers.Integral):
            a.i, a.type = int(value), AttributeProto.INT
        elif isinstance(value, numbers.Real):
            a.f, a.type = float(value), AttributeProto.FLOAT
        elif isinstance(value, (str, bytes)):
            a.s, a.type = _to_bytes(value), AttributeProto.STRING
        elif isinstance(value, TensorProto):
            a.t, a.type = value, AttributeProto.TENSOR
        elif isinstance(value, GraphProto):
            a.g, a.type = value, AttributeProto.GRAPH
        elif isinstance(value, Iterable):
            items = list(value)
            if items and all(isinstance(v, numbers.Integral) for v in items):
                a.ints, a.type = [int(v) for v in items], AttributeProto.INTS
            elif items and all(isinstance(v, numbers.Real) for v in items):
                a.floats, a.type = [float(v) for v in items], AttributeProto.FLOATS
            elif items and all(isinstance(v, (str, bytes)) for v in items):
                a.strings, a.type = [_to_bytes(v) for v in items], AttributeProto.STRINGS
            else:
                raise ValueError(f"attribute {key!r}: a list shrinkc does not write")
        else:
            raise TypeError(f"attribute {key!r}: a value of type {type(value).__name__}")
        return a

    @staticmethod
    def make_node(op_type: str, inputs: Sequence[str], outputs: Sequence[str],
                  name: str | None = None, doc_string: str | None = None,
                  domain: str | None = None, **attrs: Any) -> NodeProto:
        node = NodeProto(op_type=op_type, input=inputs, output=outputs)
        if name:
            node.name = name
        if doc_string:
            node.doc_string = doc_string
        if domain is not None:
            node.domain = domain
        node.attribute = [helper.make_attribute(k, v) for k, v in sorted(attrs.items())
                          if v is not None]
        return node

    @staticmethod
    def make_tensor(name: str, data_type: int, dims: Sequence[int],
                    vals: Sequence[float]) -> TensorProto:
        """A FLOAT, FLOAT16, INT32 or INT64 tensor with its values in ``float_data``,
        ``int32_data`` (FLOAT16: each half-float's 16 bits, as an unsigned number) or
        ``int64_data`` (what onnx.helper writes for them without ``raw``)."""
        if data_type == TensorProto.FLOAT16:
            import numpy as np

            bits = np.asarray(vals, dtype=np.float16).reshape(-1).view(np.uint16)
            vals = bits.astype(np.int64).tolist()
            field = ("int32_data", int)
        else:
            field = {TensorProto.FLOAT: ("float_data", float),
                     TensorProto.INT32: ("int32_data", int),
                     TensorProto.INT64: ("int64_data", int)}.get(data_type)
        if field is None:
            raise ValueError("shrinkc writes float, float16, int32 and int64 tensors only "
                             "this way")
        values = [field[1](v) for v in vals]
        count = 1
        for d in dims:
            count *= d
        if len(values) != count:
            raise ValueError(f"{len(values)} values for a tensor of {count}")
        return TensorProto(data_type=data_type, name=name, dims=dims, **{field[0]: values})

    @staticmethod
    def make_tensor_value_info(name: str, elem_type: int, shape: Sequence[str | int],
                               doc_string: str = "") -> ValueInfoProto:
        dims = [Dimension(dim_value=d) if isinstance(d, int) else Dimension(dim_param=d)
                for d in shape]
        tensor = TensorTypeProto(elem_type=elem_type, shape=TensorShapeProto(dim=dims))
        info = ValueInfoProto(name=name, type=TypeProto(tensor_type=tensor))
        if doc_string:
            info.doc_string = doc_string
        return info

    @staticmethod
    def make_graph(nodes: Sequence[NodeProto], name: str, inputs: Sequence[ValueInfoProto],
                   outputs: Sequence[ValueInfoProto],
                   initializer: Sequence[TensorProto] | None = None,
                   doc_string: str | None = None) -> GraphProto:
        graph = GraphProto(node=nodes, name=name, input=inputs, output=outputs,
                           initializer=initializer or [])
        if doc_string:
            graph.doc_string = doc_string
        return graph

    @staticmethod
    def make_opsetid(domain: str, version: int) -> OperatorSetIdProto:
        return OperatorSetIdProto(domain=domain, version=version)

    @staticmethod
    def make_function(domain: str, fname: str, inputs: Sequence[str], outputs: Sequence[str],
                      nodes: Sequence[NodeProto], opset_imports: Sequence[OperatorSetIdProto],
                      attributes: Sequence[str] | None = None,
                      doc_string: str | None = None) -> FunctionProto:
        f = FunctionProto(domain=domain, name=fname, input=inputs, output=outputs, node=nodes,
                          opset_import=opset_imports, attribute=attributes or [])
        if doc_string:
            f.doc_string = doc_string
        return f

    @staticmethod
    def make_model(graph: GraphProto, *, opset_imports: Sequence[OperatorSetIdProto],
                   ir_version: int, functions: Sequence[FunctionProto] = (),
                   **fields: Any) -> ModelProto:
        model = ModelProto(ir_version=ir_version, graph=graph, opset_import=opset_imports,
                           functions=functions)
        for k, v in fields.items():
            setattr(model, k, v)
        return model

    @staticmethod
    def set_model_props(model: ModelProto, props: dict[str, str]) -> None:
        model.metadata_props = [StringStringEntryProto(key=k, value=v) for k, v in props.items()]


class numpy_helper:  # noqa: N801 - stands for the module ``onnx.numpy_helper``
    @staticmethod
    def from_array(array: Any, name: str | None = None) -> TensorProto:
        """An array as a tensor with ``raw_data`` (little-endian), as onnx.numpy_helper
        writes it."""
        kinds = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64,
                 "int32": TensorProto.INT32, "float64": TensorProto.DOUBLE,
                 "float16": TensorProto.FLOAT16}
        if array.dtype.name not in kinds:
            raise ValueError(f"shrinkc writes no {array.dtype.name} tensors")
        t = TensorProto(dims=array.shape, data_type=kinds[array.dtype.name],
                        raw_data=array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
        if name:
            t.name = name
        return t


def to_onnx(model: ModelProto):
    """``model`` as an ``onnx.ModelProto`` (imports onnx)."""
    import onnx

    return onnx.ModelProto.FromString(model.SerializeToString())
