"""Score a REST-style request body with an exported ONNX graph in ONNX Runtime.

    python export/onnx_client.py serving/onnx/tfmetarec/1/adapt_and_score.onnx export/requests/adapt_and_score.json

The request is the same JSON that TF Serving takes (``{"signature_name": ...,
"inputs": {...}}``); only ``inputs`` is used. The request is checked (shapes, dtypes,
mask, NaN ratings) before it reaches the graph, which adapts to the support and scores
the query with no Python in the loop. Prints ``{"outputs": {"scores": [[...]]}}``, the
shape of TF Serving's columnar answer.
"""

from __future__ import annotations

import argparse
import json
import sys

from tfmetarec.export.onnx import OnnxScorer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="an .onnx file written by `tfmetarec export --onnx`")
    parser.add_argument("request", help="a JSON request body with an \"inputs\" object")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    args = parser.parse_args(argv)
    with open(args.request, encoding="utf-8") as f:
        body = json.load(f)
    scorer = OnnxScorer(args.model, threads=args.threads)
    try:
        outputs = scorer(body["inputs"])
    except ValueError as err:
        print(f"bad request: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"outputs": {k: v.tolist() for k, v in outputs.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
