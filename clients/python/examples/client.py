#!/usr/bin/env python3
"""A small client of the assignment server, on the assignment-client package.

It calls Assign, AssignUnit, BulkAssign, MatrixAssign and StreamAssign and prints one JSON line
per call: {"rpc": ..., "request": ..., "response": ...} with messages in canonical proto3 JSON
(the same JSON any other language's protobuf library prints), so the output can be compared with
other clients' answers; the unpacked answers of BulkAssign go to stderr.

    python3 client.py 127.0.0.1:50051 --experiment checkout-button --unit u-1 --unit u-2

Calls made, in this order:
  Assign        every unit, first experiment
  AssignUnit    every unit ({unit_type: unit}), all experiments
  BulkAssign    every experiment, all units
  MatrixAssign  all experiments x all units
  StreamAssign  all experiments; the units in batches of --batch-size (stream_cohort)

The calls the protos mark idempotent are retried on UNAVAILABLE by gRPC itself (connect() gives
the channel a service config derived from the descriptors), unless --no-retry.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, List, Optional

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from assignment.v1 import assignment_service_pb2 as pb
from assignment.v1 import types_pb2
from assignment_client import DEFAULT_RETRY, column_answers, connect


def to_json(message: Message) -> Any:
    return json_format.MessageToDict(message)


def emit(rpc: str, request: Any, response: Any) -> None:
    line = {"rpc": rpc, "request": request, "response": response}
    sys.stdout.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
    sys.stdout.flush()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("address", help="host:port of the server")
    parser.add_argument("--experiment", action="append", required=True, help="experiment key (repeatable)")
    parser.add_argument("--unit", action="append", required=True, help="unit id (repeatable)")
    parser.add_argument("--unit-type", default="", help="unit type of the units (default: user_id)")
    parser.add_argument("--batch-size", type=int, default=2, help="units per StreamAssign message")
    parser.add_argument("--dry-run", action="store_true", help="evaluate without storing")
    parser.add_argument("--token", help="sent as 'authorization: Bearer TOKEN'")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline of each unary call, seconds")
    parser.add_argument("--no-retry", action="store_true", help="do not retry idempotent calls")
    args = parser.parse_args(argv)

    options = types_pb2.AssignOptions(dry_run=args.dry_run)
    experiments, units = args.experiment, args.unit
    unit_type = args.unit_type or "user_id"

    retry = None if args.no_retry else DEFAULT_RETRY
    with connect(args.address, args.token, timeout=args.timeout, retry=retry) as client:
        stub = client.assignments

        for unit in units:
            assign = pb.AssignRequest(experiment_key=experiments[0], unit_id=unit, unit_type=args.unit_type, options=options)
            emit("Assign", to_json(assign), to_json(stub.Assign(assign)))

        for unit in units:
            assign_unit = pb.AssignUnitRequest(units={unit_type: unit}, experiment_keys=experiments, options=options)
            emit("AssignUnit", to_json(assign_unit), to_json(stub.AssignUnit(assign_unit)))

        for key in experiments:
            bulk = pb.BulkAssignRequest(experiment_key=key, unit_type=args.unit_type, unit_ids=units, options=options)
            response = stub.BulkAssign(bulk)
            emit("BulkAssign", to_json(bulk), to_json(response))
            answers = [(a.variant_key, a.reason_name) for a in column_answers(response.column)]
            print("# %s: %s" % (key, answers), file=sys.stderr)

        matrix = pb.MatrixAssignRequest(experiment_keys=experiments, unit_type=args.unit_type, unit_ids=units, options=options)
        emit("MatrixAssign", to_json(matrix), to_json(stub.MatrixAssign(matrix)))

        # One message per batch, the first carrying the setup; one answer per batch, in order.
        batches = list(client.stream_cohort(experiments, units, unit_type=args.unit_type, options=options, batch_size=max(1, args.batch_size)))
        setup = pb.StreamAssignSetup(experiment_keys=experiments, unit_type=args.unit_type, options=options)
        sent = [pb.StreamAssignRequest(setup=setup if b.index == 0 else None, unit_ids=b.unit_ids) for b in batches]
        emit("StreamAssign", [to_json(r) for r in sent], [to_json(b.response) for b in batches])
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as err:
        print("error: %s: %s" % (err.code().name, err.details()), file=sys.stderr)
        sys.exit(1)
