"""Presets: a trained learner with everything needed to use it again, checksummed.

A preset is a folder:

* ``config.json`` -- the experiment config (model, learner, data protocol) and the
  fitted :class:`~tfmetarec.data.FeatureEncoder` (vocabularies), so new requests are
  encoded the way the model was trained;
* ``learner.keras`` -- the learner and its model (Keras v3 archive: JSON config plus
  weights; loaded with ``safe_mode``, nothing is unpickled);
* ``metadata.json`` -- training data, protocol, metrics per scenario, library version
  and the sha256 and size of every other file;
* ``README.md`` -- the model card.

:func:`from_preset` takes a registered name (a folder of ``saved_models/``), a local
folder, an ``https://`` URL of a preset folder, or ``hf://owner/repo`` (Hugging Face
Hub, imported only then). Every file is checked against ``metadata.json`` before
anything is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tfmetarec._version import __version__
from tfmetarec.config import ExperimentConfig
from tfmetarec.data import FeatureEncoder
from tfmetarec.evaluation.report import to_markdown
from tfmetarec.learners import MetaLearner
from tfmetarec.run_folder import CONFIG, LEARNER, load_keras
from tfmetarec.workflows.build import learner_from_config, model_from_spec

FORMAT = 3
README = "README.md"
METADATA = "metadata.json"
REQUIRED = (CONFIG, LEARNER, README)
PRESETS_ENV = "TFMETAREC_PRESETS_DIR"


class PresetError(ValueError):
    """A preset is missing, corrupt, truncated or does not match its metadata."""


@dataclass
class Preset:
    """A loaded preset: the learner, its config and encoder, and its metadata."""

    path: Path
    config: ExperimentConfig
    encoder: FeatureEncoder
    learner: MetaLearner
    metadata: dict[str, Any]

    @property
    def metrics(self) -> pd.DataFrame:
        """The metrics recorded at training time, one row per scenario."""
        return pd.DataFrame(self.metadata.get("metrics", []))


def presets_dir() -> Path:
    """Where registered presets live: ``$TFMETAREC_PRESETS_DIR``, else the presets installed
    with the package (``tfmetarec/saved_models`` in a wheel), else a checkout's ``saved_models/``."""
    env = os.environ.get(PRESETS_ENV)
    if env:
        return Path(env)
    package = Path(__file__).resolve().parent.parent
    installed = package / "saved_models"
    return installed if installed.is_dir() else package.parent / "saved_models"


def available_presets() -> list[str]:
    """Names of the registered presets (folders with a ``metadata.json``)."""
    root = presets_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and (p / METADATA).is_file())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_card(meta: dict[str, Any]) -> str:
    metrics = pd.DataFrame(meta.get("metrics", []))
    table = to_markdown(metrics) if len(metrics) else "(no metrics recorded)"
    return f"""# {meta['name']}

{meta.get('description', '')}

- **Model / learner**: {meta['model']} + {meta['learner']}
- **Training data**: {meta['training_data']}
- **Protocol**: {meta['protocol']}
- **Library**: tfmetarec {meta['library_version']}

## Intended use

Scoring items for users with few or no ratings (cold start) on data encoded like the
training data: load with `tfmetarec.from_preset({meta['name']!r})`, adapt to a user's
support ratings, score candidates; or fine-tune on your own interactions with
`tfmetarec finetune --from {meta['name']}`.

## Metrics (the preset's own learner, on the held-out partitions of its split)

{table}

## Data and license

{meta.get('data_license', 'See the training data above.')}

## Limits

{meta.get('limits', 'Trained on a small dataset with a short budget; expect to fine-tune on your own data.')}
"""


def save_to_preset(
    learner: MetaLearner,
    config: ExperimentConfig,
    encoder: FeatureEncoder,
    path: str | os.PathLike,
    name: str | None = None,
    metrics: pd.DataFrame | None = None,
    **card: str,
) -> Path:
    """Write a preset folder (refuses a folder that is not empty).

    ``card`` adds model-card text: ``description``, ``training_data``, ``protocol``,
    ``data_license``, ``limits``.
    """
    out = Path(path)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose a new folder for the preset.")
    problems = consistency_problems(config, encoder, learner)
    if problems:
        raise PresetError(f"Refusing to save a preset whose parts disagree: {'; '.join(problems[:5])}.")
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG).write_text(
        json.dumps({"format": FORMAT, "experiment": config.to_dict(), "encoder": encoder.to_dict()}, indent=1),
        encoding="utf-8")
    learner.save(out / LEARNER)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "name": name or out.name,
        "description": card.get("description", ""),
        "model": config.model.name,
        "learner": config.learner.name,
        "training_data": card.get("training_data", config.dataset),
        "protocol": card.get("protocol", f"{config.split.method} cold-start split, seed {config.train.seed}"),
        "data_license": card.get("data_license", ""),
        "limits": card.get("limits", ""),
        "library_version": __version__,
        "metrics": [] if metrics is None else json.loads(metrics.to_json(orient="records")),
    }
    (out / README).write_text(_model_card(meta), encoding="utf-8")
    meta["files"] = {f: {"sha256": sha256(out / f), "bytes": (out / f).stat().st_size} for f in REQUIRED}
    (out / METADATA).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return out


def verify(folder: Path) -> dict[str, Any]:
    """Check every file of a preset folder against its metadata; returns the metadata."""
    meta_path = folder / METADATA
    if not meta_path.is_file():
        raise PresetError(f"{folder} is not a preset: metadata.json is missing.")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        files = meta["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise PresetError(f"{meta_path} is corrupt: {err}.") from err
    if meta.get("format") != FORMAT:
        raise PresetError(
            f"{meta_path}: preset format {meta.get('format')!r}, this library reads format {FORMAT} (models with "
            "settings as constructor options, tfmetarec >= 0.3). Re-make the preset from its training "
            "recipe with this version: `python scripts/make_presets.py` for the published ones, or "
            "tfmetarec.save_to_preset(...) after training again for your own.")
    for required in REQUIRED:
        if required not in files:
            raise PresetError(f"{meta_path} does not list {required}.")
    for fname, info in files.items():
        path = folder / fname
        if not path.is_file():
            raise PresetError(f"{path} is missing from the preset.")
        size = path.stat().st_size
        if size != info["bytes"]:
            raise PresetError(f"{path} has {size} bytes, the preset says {info['bytes']} (truncated or replaced).")
        if sha256(path) != info["sha256"]:
            raise PresetError(f"{path} fails its sha256 check: the file was changed or corrupted.")
    return meta


def consistency_problems(config: ExperimentConfig, encoder: FeatureEncoder, learner: MetaLearner) -> list[str]:
    """What disagrees between a config + encoder and a learner: the model and learner classes,
    every setting (the config's options against the constructor arguments the learner was
    saved with), and every variable's name and shape (which carry the vocabulary sizes and
    layer widths) against a learner built afresh from the config and the encoder. Empty when
    they agree."""
    try:
        fresh = learner_from_config(config, model_from_spec(config, encoder.spec))
    except (ValueError, TypeError, KeyError) as err:
        return [f"the config and encoder do not build a model and learner: {err}"]
    problems = []
    if type(learner.model) is not type(fresh.model):
        problems.append(f"model: config says {config.model.name!r} ({type(fresh.model).__name__}), {LEARNER} holds "
                        f"{type(learner.model).__name__}")
    if type(learner) is not type(fresh):
        problems.append(f"learner: config says {config.learner.name!r} ({type(fresh).__name__}), {LEARNER} "
                        f"holds {type(learner).__name__}")
    if problems:
        return problems
    if learner.model.encoder_digest != encoder.digest():
        problems.append(f"the encoder in {CONFIG} is not the one the model in {LEARNER} was built with (its "
                        "vocabularies, transforms or rating range differ: digest "
                        f"{encoder.digest()[:12]} against {learner.model.encoder_digest[:12] or 'none'})")
    for what, want, got in (("learner", fresh.settings_config(), learner.settings_config()),
                            ("model", fresh.model.settings_config(), learner.model.settings_config())):
        for key in sorted(set(want) | set(got)):
            if want.get(key) != got.get(key):
                problems.append(f"{what}.{key}: {got.get(key)!r} in {LEARNER}, {want.get(key)!r} in {CONFIG}")

    def shapes(learner_: MetaLearner) -> dict[str, tuple]:
        in_model = {id(v) for v in learner_.model.weights}
        return {f"{'model' if id(v) in in_model else 'learner'} variable {v.name}": tuple(v.shape)
                for v in learner_.weights}

    expected, found = shapes(fresh), shapes(learner)
    for name in sorted(set(expected) | set(found)):
        if name not in found:
            problems.append(f"{name}: expected by the config, missing from {LEARNER}")
        elif name not in expected:
            problems.append(f"{name}: in {LEARNER}, not built from the config")
        elif expected[name] != found[name]:
            problems.append(f"{name}: shape {found[name]} in {LEARNER}, {expected[name]} from the config "
                            "and encoder (vocabulary sizes and layer widths)")
    return problems


def _download(url: str, dest: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:  # noqa: S310 (scheme checked)
            shutil.copyfileobj(response, f)
    except OSError as err:
        raise PresetError(f"Could not download {url}: {err}.") from err


def _fetch_http(url: str, cache: Path, allow_http: bool) -> Path:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "http" and not (allow_http or parsed.hostname in ("localhost", "127.0.0.1")):
        raise PresetError(f"Refusing plain http for {url}; use https (or allow_http=True).")
    base = url.rstrip("/") + "/"
    key = hashlib.sha256(base.encode()).hexdigest()[:16]
    target = cache / key
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".download-"))
    try:
        _download(base + METADATA, staging / METADATA)
        try:
            files = json.loads((staging / METADATA).read_text(encoding="utf-8"))["files"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise PresetError(f"{base}{METADATA} is corrupt: {err}.") from err
        for fname in files:
            if "/" in fname or fname.startswith("."):
                raise PresetError(f"{base}{METADATA} lists an unsafe file name {fname!r}.")
            _download(base + fname, staging / fname)
        verify(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a failed download leaves nothing behind
        raise
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def _fetch_hub(handle: str, cache: Path) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:
        raise PresetError(f"Loading {handle} needs huggingface_hub: pip install huggingface_hub.") from err
    return Path(snapshot_download(repo_id=handle[len("hf://"):], cache_dir=str(cache)))


def resolve(source: str | os.PathLike, cache_dir: str | os.PathLike | None = None, allow_http: bool = False) -> Path:
    """The local folder of a preset given by name, folder, URL or ``hf://`` handle."""
    text = os.fspath(source)
    cache = Path(cache_dir or Path.home() / ".cache" / "tfmetarec" / "presets")
    if text.startswith(("https://", "http://")):
        cache.mkdir(parents=True, exist_ok=True)
        return _fetch_http(text, cache, allow_http)
    if text.startswith("hf://"):
        cache.mkdir(parents=True, exist_ok=True)
        return _fetch_hub(text, cache)
    if Path(text).is_dir():
        return Path(text)
    registered = presets_dir() / text
    if registered.is_dir():
        return registered
    raise PresetError(f"No preset {text!r}: not a folder, URL or registered name "
                      f"(registered: {available_presets() or 'none'}; looked in {presets_dir()}).")


def from_preset(source: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                allow_http: bool = False) -> Preset:
    """Load a preset by registered name, folder, ``https://`` URL or ``hf://`` handle, checksums first."""
    folder = resolve(source, cache_dir, allow_http)
    meta = verify(folder)
    try:
        stored = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        config = ExperimentConfig.from_dict(stored["experiment"])
        encoder = FeatureEncoder.from_dict(stored["encoder"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise PresetError(f"{folder / CONFIG} does not describe an experiment: {err}.") from err
    try:
        learner = load_keras(folder / LEARNER)
    except (OSError, ValueError) as err:  # missing, empty, not a Keras archive, non-finite weights
        raise PresetError(str(err)) from err
    if not isinstance(learner, MetaLearner):
        raise PresetError(f"{folder / LEARNER} holds a {type(learner).__name__}, not a tfmetarec learner.")
    problems = consistency_problems(config, encoder, learner)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise PresetError(f"{folder}: config.json and learner.keras disagree: {'; '.join(problems[:5])}{more}.")
    return Preset(folder, config, encoder, learner, meta)
