"""Answer a REST-style request body with an exported ONNX folder in ONNX Runtime.

    python export/onnx_client.py serving/onnx/tfmetarec/1 export/requests/adapt_and_score.json

The request is the same JSON that TF Serving takes (``{"signature_name": ...,
"inputs": {...}}``, raw IDs). The client checks it against the export's contract, looks
the raw IDs up, pads it to a bucket, runs the graph (which adapts to the support with no
Python in the loop) and prints ``{"outputs": {...}}``, the shape of TF Serving's columnar
answer.
"""

from __future__ import annotations

import argparse
import json
import sys

from tfmetarec.export.contract import RequestError
from tfmetarec.export.onnx import OnnxRecommender


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a folder written by `tfmetarec export --onnx` (holds contract.json)")
    parser.add_argument("request", help="a JSON request body with \"signature_name\" and \"inputs\"")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    args = parser.parse_args(argv)
    with open(args.request, encoding="utf-8") as f:
        body = json.load(f)
    client = OnnxRecommender(args.folder, threads=args.threads)
    try:
        outputs = client(body.get("signature_name", "serving_default"), body["inputs"])
    except RequestError as err:
        print(f"bad request: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"outputs": {k: v.tolist() for k, v in outputs.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
