#!/usr/bin/env python3
"""Writes tests/data/framing/: the same conversation events as an independent producer
sends them, through Confluent's own Python client (confluent-kafka) and Google's protobuf.

    python3 -m venv /tmp/venv
    /tmp/venv/bin/pip install confluent-kafka protobuf grpcio-tools httpx attrs cachetools authlib jsonschema
    /tmp/venv/bin/python scripts/gen-framing-fixtures.py

Each file holds the events of EVENTS in order, one record value per entry, each entry
prefixed with its length as a protobuf varint (the container `slawatch replay` reads for
its binary formats):

  events.json.bin                  proto3 JSON (json_format.MessageToJson), no framing
  events.protobuf.bin              raw protobuf ConversationEvent (SerializeToString)
  events.schema-registry-protobuf.bin
                                   ProtobufSerializer: magic byte 0, 4-byte big-endian
                                   schema id, message-index array (0x00 = [0]), message
  events.schema-registry-json.bin  JSONSerializer: magic byte 0, schema id, json.dumps text
  events.schema-registry-protobuf-header.bin
                                   ProtobufSerializer with header_schema_id_serializer: the
                                   schema GUID travels in the `__value_schema_id` header, the
                                   value is the bare message (must equal events.protobuf.bin)

The registry is the client's in-memory mock (`mock://`): no network. The Rust tests read
only the checked-in bytes; this script is for re-creating them (the schema ids depend on the
mock registry's numbering, 1 for the first subject registered).
"""
import json
import os
import subprocess
import sys
import tempfile

from confluent_kafka.schema_registry import SchemaRegistryClient, header_schema_id_serializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import json_format

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "data", "framing")
TOPIC = "conversations"

# (event_id, ticket_id, occurred_at, body field, body) — tenant "acme" throughout, in time
# order. src/codec/framing.rs restates these events; keep in step.
EVENTS = [
    ("F1-1", "F1", "2024-03-04T10:00:00Z", "opened",
     {"channel": "CHANNEL_CHAT", "category": "CATEGORY_INQUIRY", "urgency": "URGENCY_URGENT",
      "tier": "TIER_STANDARD", "team": "support"}),
    ("F2-1", "F2", "2024-03-04T10:00:00Z", "opened",
     {"channel": "CHANNEL_EMAIL", "category": "CATEGORY_COMPLAINT", "urgency": "URGENCY_GENERAL",
      "tier": "TIER_VIP"}),
    ("F1-2", "F1", "2024-03-04T10:00:30Z", "customerMessage", {}),
    ("F1-3", "F1", "2024-03-04T10:01:00Z", "agentMessage",
     {"agentId": "a-7", "kind": "REPLY_KIND_ANSWER", "audience": "AUDIENCE_CUSTOMER"}),
    ("F1-4", "F1", "2024-03-04T10:05:00Z", "resolved", {}),
    ("F1-5", "F1", "2024-03-04T10:06:00Z", "closed", {}),
    ("F2-2", "F2", "2024-03-04T10:10:00Z", "customerMessage", {}),
]

# A JSON Schema of the proto3 JSON mapping of ConversationEvent, as a producer using
# JSONSerializer would register it.
JSON_SCHEMA = json.dumps({
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "ConversationEvent",
    "type": "object",
    "required": ["eventId", "ticketId", "occurredAt"],
    "properties": {
        "eventId": {"type": "string"},
        "ticketId": {"type": "string"},
        "occurredAt": {"type": "string", "format": "date-time"},
        "tenant": {"type": "string"},
    },
    "additionalProperties": True,
})


def compile_proto(tmp):
    """protoc (from grpcio-tools) → conversation_pb2 in `tmp`."""
    import grpc_tools
    from grpc_tools import protoc
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    src = os.path.join(REPO, "proto")
    rc = protoc.main(["protoc", f"-I{src}", f"-I{include}", f"--python_out={tmp}",
                      "slawatch/v1/conversation.proto"])
    if rc != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, tmp)
    from slawatch.v1 import conversation_pb2
    return conversation_pb2


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def write(name, values):
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        for v in values:
            f.write(varint(len(v)))
            f.write(v)
    print(f"wrote {path} ({len(values)} records)")


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pb = compile_proto(tmp)
        messages = []
        for event_id, ticket, at, field, body in EVENTS:
            d = {"eventId": event_id, "ticketId": ticket, "occurredAt": at, "tenant": "acme",
                 field: body}
            messages.append(json_format.ParseDict(d, pb.ConversationEvent()))

        registry = SchemaRegistryClient.new_client({"url": "mock://framing"})
        ctx = SerializationContext(TOPIC, MessageField.VALUE)
        sr_pb = ProtobufSerializer(pb.ConversationEvent, registry)
        sr_json = JSONSerializer(JSON_SCHEMA, registry,
                                 to_dict=lambda m, _ctx: json_format.MessageToDict(m))

        plain_json = [json_format.MessageToJson(m, indent=None).encode() for m in messages]
        raw = [m.SerializeToString() for m in messages]
        framed_pb = [sr_pb(m, ctx) for m in messages]
        framed_json = [sr_json(m, ctx) for m in messages]

        header_pb = ProtobufSerializer(pb.ConversationEvent, registry,
                                       {"schema.id.serializer": header_schema_id_serializer})
        header_values = []
        for m in messages:
            hctx = SerializationContext(TOPIC, MessageField.VALUE, headers=[])
            header_values.append(header_pb(m, hctx))
            assert any(k == "__value_schema_id" for k, _ in hctx.headers), hctx.headers

        # What the client's own deserializers read back must be the events.
        de_pb = ProtobufDeserializer(pb.ConversationEvent, None, registry)
        de_json = JSONDeserializer(JSON_SCHEMA, schema_registry_client=registry)
        for m, fp, fj in zip(messages, framed_pb, framed_json):
            assert fp[0] == 0 and fj[0] == 0, "magic byte"
            assert de_pb(fp, ctx) == m
            assert json_format.ParseDict(de_json(fj, ctx), pb.ConversationEvent()) == m
        assert header_values == raw, "header-mode values are the bare message"

        write("events.json.bin", plain_json)
        write("events.protobuf.bin", raw)
        write("events.schema-registry-protobuf.bin", framed_pb)
        write("events.schema-registry-json.bin", framed_json)
        write("events.schema-registry-protobuf-header.bin", header_values)


if __name__ == "__main__":
    main()
