"""Minimal protobuf encoder for building SavedModel test files without TensorFlow."""

from __future__ import annotations


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_bytes(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def node(name: str, op: str) -> bytes:
    return field_bytes(1, name.encode()) + field_bytes(2, op.encode())


def saved_model(
    graph_nodes: list[tuple[str, str]], functions: dict[str, list[tuple[str, str]]] | None = None
) -> bytes:
    graph = b"".join(field_bytes(1, node(n, op)) for n, op in graph_nodes)
    if functions:
        library = b""
        for fname, nodes in functions.items():
            signature = field_bytes(1, fname.encode())
            body = field_bytes(1, signature) + b"".join(
                field_bytes(3, node(n, op)) for n, op in nodes
            )
            library += field_bytes(1, body)
        graph += field_bytes(2, library)
    meta_graph = field_bytes(2, graph)
    return field_varint(1, 1) + field_bytes(2, meta_graph)
