"""Send a request body to TF Serving over gRPC (or print the PredictRequest it would send).

    python export/grpc_client.py serving/tfmetarec/1 export/requests/recommend.json                  # print
    python export/grpc_client.py serving/tfmetarec/1 export/requests/recommend.json --server host:8500

The body is the JSON of ``export/requests/`` (raw IDs). The request is checked against
the export's ``contract.json`` and built with the client protos of
``tensorflow-serving-api`` (``pip install "tfmetarec[serving]"`` with your TensorFlow
pinned); ``--server`` sends it with grpcio and prints the answer.
"""

from __future__ import annotations

import argparse
import json
import sys

from tfmetarec.export.clients import grpc_request
from tfmetarec.export.contract import RequestError
from tfmetarec.export.saved_model import load_contract


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", help="the SavedModel version folder (holds assets.extra/contract.json)")
    parser.add_argument("request", help="a JSON request body with \"signature_name\" and \"inputs\"")
    parser.add_argument("--server", help="host:port of TF Serving's gRPC endpoint")
    parser.add_argument("--model", default="tfmetarec", help="the model name TF Serving serves (default: %(default)s)")
    args = parser.parse_args(argv)
    with open(args.request, encoding="utf-8") as f:
        body = json.load(f)
    try:
        request = grpc_request(load_contract(args.export), body["signature_name"], body["inputs"], args.model)
    except RequestError as err:
        print(f"bad request: {err}", file=sys.stderr)
        return 2
    if not args.server:
        print(request)
        return 0
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(args.server))
    answer = stub.Predict(request, timeout=10.0)
    print(json.dumps({"outputs": {k: tf.make_ndarray(v).tolist() for k, v in answer.outputs.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
