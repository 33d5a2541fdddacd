"""Write the REST request examples in ``export/requests/`` from a real synthetic task.

    python export/make_requests.py

The examples describe one new user of the built-in synthetic data set (the data
`tfmetarec quickstart` trains on): 3 support ratings and 4 candidate items, in TF
Serving's columnar ``"inputs"`` form (support and query have different lengths, so
the row form does not fit). A model trained with the default feature encoding of the
synthetic data takes them as they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfmetarec import experiment  # noqa: E402
from tfmetarec.config import ExperimentConfig  # noqa: E402
from tfmetarec.tasks import eval_batches  # noqa: E402

HERE = Path(__file__).resolve().parent
SUPPORT, QUERY = 3, 4


def example_request() -> dict[str, list]:
    prepared = experiment.prepare(ExperimentConfig())
    tasks = prepared.scenarios["user_cold"]
    episode, _ = next(iter(eval_batches(prepared.encoded, tasks, batch_size=1, bucketed=False)))
    inputs = {}
    for part, rows in (("support", SUPPORT), ("query", QUERY)):
        for key, value in episode[part].items():
            if part == "query" and key in ("rating", "mask"):
                continue
            inputs[f"{part}_{key}"] = value[:1, :rows].tolist()
    return inputs


def main() -> None:
    inputs = example_request()
    query = {k: v for k, v in inputs.items() if k.startswith("query_")}
    support = {k: v for k, v in inputs.items() if k.startswith("support_")}
    bodies = {
        "adapt_and_score": {"signature_name": "adapt_and_score", "inputs": inputs},
        "serving_default": {"signature_name": "serving_default", "inputs": query},
        "adapt": {"signature_name": "adapt", "inputs": support},
    }
    (HERE / "requests").mkdir(exist_ok=True)
    for name, body in bodies.items():
        path = HERE / "requests" / f"{name}.json"
        lines = [f'  "{k}": {json.dumps(v, separators=(",", ":"))}' for k, v in body["inputs"].items()]
        text = '{\n "signature_name": "%s",\n "inputs": {\n%s\n }\n}\n' % (body["signature_name"], ",\n".join(lines))
        json.loads(text)  # stays valid JSON
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
