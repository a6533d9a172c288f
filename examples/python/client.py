#!/usr/bin/env python3
"""A small Python client of the assignment server, built on the stubs generated into gen/python.

Needs only the standard library, grpcio and protobuf (Debian: python3-grpcio, python3-protobuf).
It calls Assign, AssignUnit, BulkAssign, MatrixAssign and StreamAssign and prints one JSON line
per call: {"rpc": ..., "request": ..., "response": ...} with messages in canonical proto3 JSON
(the same JSON any other language's protobuf library prints), so the output can be compared with
other clients' answers.

    python3 examples/python/client.py 127.0.0.1:50051 \\
        --experiment checkout-flow --experiment pricing --unit u-1 --unit u-2

Calls made, in this order:
  Assign        every unit, first experiment
  AssignUnit    every unit ({unit_type: unit}), all experiments
  BulkAssign    every experiment, all units
  MatrixAssign  all experiments x all units
  StreamAssign  all experiments; the units in batches of --batch-size

Calls the proto marks idempotent (idempotency_level IDEMPOTENT or NO_SIDE_EFFECTS) are retried
on UNAVAILABLE by gRPC itself, through a service config built from the generated descriptors.
"""

import argparse
import json
import os
import sys

# gen/python is generated (and wiped by `buf generate`): leave no __pycache__ in it.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "gen", "python"))

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402

from assignment.v1 import assignment_service_pb2 as pb  # noqa: E402
from assignment.v1 import assignment_service_pb2_grpc as pb_grpc  # noqa: E402
from assignment.v1 import types_pb2  # noqa: E402


def retry_service_config(services, max_attempts=4):
    """A gRPC service config retrying, on UNAVAILABLE, every method the proto declares
    idempotent, unless it streams requests (a request stream cannot be replayed)."""
    names = []
    for service in services:
        for method in service.methods:
            level = method.GetOptions().idempotency_level
            if level in (method.GetOptions().IDEMPOTENT, method.GetOptions().NO_SIDE_EFFECTS) and not method.client_streaming:
                names.append({"service": service.full_name, "method": method.name})
    policy = {
        "maxAttempts": max_attempts,
        "initialBackoff": "0.05s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    return {"methodConfig": [{"name": names, "retryPolicy": policy}]} if names else {}


def to_json(message):
    return json_format.MessageToDict(message)


def emit(rpc, request, response):
    line = {"rpc": rpc, "request": request, "response": response}
    sys.stdout.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
    sys.stdout.flush()


def column_answers(column):
    """Unpacks a packed AssignmentColumn: one (variant key, reason name) per unit, in order."""
    return [
        (column.legend[v], types_pb2.Reason.Name(r))
        for v, r in zip(column.variant_indexes, column.reasons)
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("address", help="host:port of the server")
    parser.add_argument("--experiment", action="append", required=True, help="experiment key (repeatable)")
    parser.add_argument("--unit", action="append", required=True, help="unit id (repeatable)")
    parser.add_argument("--unit-type", default="", help="unit type of the units (default: user_id)")
    parser.add_argument("--batch-size", type=int, default=2, help="units per StreamAssign message")
    parser.add_argument("--dry-run", action="store_true", help="evaluate without storing")
    parser.add_argument("--token", help="sent as 'authorization: Bearer TOKEN'")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline of each call, seconds")
    parser.add_argument("--no-retry", action="store_true", help="do not retry idempotent calls")
    args = parser.parse_args(argv)

    metadata = [("authorization", "Bearer " + args.token)] if args.token else None
    options = types_pb2.AssignOptions(dry_run=args.dry_run)
    experiments, units = args.experiment, args.unit
    unit_type = args.unit_type or "user_id"

    channel_options = [("grpc.enable_retries", 0 if args.no_retry else 1)]
    if not args.no_retry:
        config = retry_service_config([pb.DESCRIPTOR.services_by_name["AssignmentService"]])
        channel_options.append(("grpc.service_config", json.dumps(config)))

    with grpc.insecure_channel(args.address, options=channel_options) as channel:
        stub = pb_grpc.AssignmentServiceStub(channel)
        call = {"timeout": args.timeout, "metadata": metadata}

        for unit in units:
            request = pb.AssignRequest(experiment_key=experiments[0], unit_id=unit, unit_type=args.unit_type, options=options)
            emit("Assign", to_json(request), to_json(stub.Assign(request, **call)))

        for unit in units:
            request = pb.AssignUnitRequest(units={unit_type: unit}, experiment_keys=experiments, options=options)
            emit("AssignUnit", to_json(request), to_json(stub.AssignUnit(request, **call)))

        for key in experiments:
            request = pb.BulkAssignRequest(experiment_key=key, unit_type=args.unit_type, unit_ids=units, options=options)
            response = stub.BulkAssign(request, **call)
            emit("BulkAssign", to_json(request), to_json(response))
            print("# %s: %s" % (key, column_answers(response.column)), file=sys.stderr)

        request = pb.MatrixAssignRequest(experiment_keys=experiments, unit_type=args.unit_type, unit_ids=units, options=options)
        emit("MatrixAssign", to_json(request), to_json(stub.MatrixAssign(request, **call)))

        # The first message carries the setup, every message a batch of units; one answer per
        # batch, in order.
        setup = pb.StreamAssignSetup(experiment_keys=experiments, unit_type=args.unit_type, options=options)
        size = max(1, args.batch_size)
        requests = [
            pb.StreamAssignRequest(setup=setup if i == 0 else None, unit_ids=units[i : i + size])
            for i in range(0, len(units), size)
        ]
        responses = stub.StreamAssign(iter(requests), **call)
        emit("StreamAssign", [to_json(r) for r in requests], [to_json(r) for r in responses])
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as err:
        print("error: %s: %s" % (err.code().name, err.details()), file=sys.stderr)
        sys.exit(1)
