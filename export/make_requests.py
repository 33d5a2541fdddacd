"""Write the REST request examples in ``export/requests/`` from a real synthetic user.

    python export/make_requests.py

The examples describe one new user of the built-in synthetic data set (the data
`tfmetarec quickstart` trains on), in raw IDs: the user's raw feature values, three
rated items with their ratings, and four candidate items, in TF Serving's columnar
``"inputs"`` form. Any model trained on the synthetic data takes them as they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfmetarec import experiment  # noqa: E402
from tfmetarec.config import ExperimentConfig  # noqa: E402
from tfmetarec.export.names import QUERY_ITEM  # noqa: E402
from tfmetarec.export.contract import make_request  # noqa: E402

HERE = Path(__file__).resolve().parent
SUPPORT, QUERY = 3, 4
FIELDS = ("gender", "age", "occupation", "zip")


def example_request() -> dict[str, list]:
    """One user-cold user of the synthetic split: features, first ratings, candidates."""
    prepared = experiment.prepare(ExperimentConfig())
    cold = prepared.split.partitions["user_cold"]
    user = int(cold["user"].iloc[0])
    rated = cold[cold["user"] == user].sort_values("item")
    row = prepared.data.users.set_index("user").loc[user]
    request = make_request(
        [{"user_id": user, **{f: row[f] for f in FIELDS}}],
        [list(zip(rated["item"].iloc[:SUPPORT].astype(int), rated["rating"].iloc[:SUPPORT].astype(float)))],
        [rated["item"].iloc[SUPPORT:SUPPORT + QUERY].astype(int).tolist()],
        FIELDS,
    )
    return {k: v.tolist() for k, v in request.items()}


def main() -> None:
    inputs = example_request()
    no_query = {k: v for k, v in inputs.items() if k != QUERY_ITEM}
    no_support = {k: v for k, v in inputs.items() if not k.startswith("support_")}
    bodies = {"adapt_and_score": inputs, "serving_default": no_support, "adapt": no_query, "recommend": no_query}
    (HERE / "requests").mkdir(exist_ok=True)
    for name, body in bodies.items():
        path = HERE / "requests" / f"{name}.json"
        lines = [f'  "{k}": {json.dumps(v, separators=(",", ":"))}' for k, v in body.items()]
        text = '{\n "signature_name": "%s",\n "inputs": {\n%s\n }\n}\n' % (name, ",\n".join(lines))
        json.loads(text)  # stays valid JSON
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
