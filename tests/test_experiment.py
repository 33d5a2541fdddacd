"""End to end through the workflows: train, evaluate (report, paired tests, curves, streaming), reload;
item tasks; the real 100K set runs. (That meta-learning beats no adaptation is tests/test_learning.py's.)"""


import pytest

from tfmetarec.config import ExperimentConfig, LearnerConfig, ModelConfig, TrainConfig
from tfmetarec.data.paths import movielens_100k_dir
from tfmetarec.data.splits import SCENARIOS
from tfmetarec.experiment import adaptation_curves, evaluate, load_run, streaming, train


def _row(report, method, scenario):
    row = report[(report.method == method) & (report.scenario == scenario)]
    assert len(row) == 1, (method, scenario)
    return row.iloc[0]


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    config = ExperimentConfig(
        dataset="synthetic",
        model=ModelConfig(embedding_dim=16, hidden_units=(32, 32)),
        learner=LearnerConfig(inner_steps=3),
        train=TrainConfig(meta_steps=300, pretrain_steps=300, batch_size=32, jit_compile=False),
    )
    run = train(config, workdir, verbose=0)
    return run, workdir, evaluate(run, workdir, binary=True)


def test_report_has_every_scenario_and_method(synthetic_run):
    _, workdir, report = synthetic_run
    assert set(report.scenario) == set(SCENARIOS)
    assert set(report.method) == {"maml", "no-adaptation", "fine-tune"}
    assert (report["tasks"] > 0).all()
    assert ((report["nDCG@1"] >= 0) & (report["nDCG@5"] <= 1)).all()
    assert (workdir / "report.md").read_text().startswith("| scenario | method |")
    assert (workdir / "split" / "counts.csv").exists()


def test_saved_run_reloads_with_identical_report(synthetic_run):
    _, workdir, report = synthetic_run
    again = evaluate(load_run(workdir), binary=True)
    assert again.equals(report)


def test_adaptation_curves_are_written_and_adaptation_helps(synthetic_run):
    run, workdir, _ = synthetic_run
    curves = adaptation_curves(run, workdir / "curves", support_sizes=(1, 20), inner_steps=(0, 1))
    for name in ("curve_support_MAE", "curve_steps_MAE", "curve_support_nDCG3", "curve_steps_nDCG3"):
        assert (workdir / "curves" / f"{name}.png").stat().st_size > 1000
        assert (workdir / "curves" / f"{name}.csv").exists()
    steps = curves["inner_steps"].set_index(["method", "inner_steps"])["MAE"]
    assert steps[("maml", 3)] < steps[("maml", 0)]
    support = curves["support"].set_index(["method", "support"])
    assert support.loc[("no-adaptation", 1), "MAE"] == pytest.approx(support.loc[("no-adaptation", 20), "MAE"])
    assert support.loc[("maml", 20), "MAE"] < support.loc[("maml", 1), "MAE"]


def test_binary_view_and_coverage(synthetic_run):
    _, _, report = synthetic_run
    for col in ("precision", "recall", "F1", "AUC", "coverage@1", "coverage@5"):
        assert report[col].between(0, 1).all(), col
    maml = _row(report, "maml", "user_cold")
    assert maml.AUC > 0.6


def test_movielens_100k_short_run_has_all_scenarios(tmp_path):
    path = movielens_100k_dir()
    if not (path / "u.data").exists():
        pytest.skip(f"MovieLens 100K not found at {path}; set TFMETAREC_DATA_DIR to the folder holding movielens-100k/")
    config = ExperimentConfig(
        dataset="movielens-100k",
        model=ModelConfig(embedding_dim=8, hidden_units=(16,)),
        learner=LearnerConfig(inner_steps=1),
        train=TrainConfig(meta_steps=20, pretrain_steps=20, batch_size=16, jit_compile=False),
    )
    run = train(config, tmp_path, verbose=0)
    report = evaluate(run)
    assert set(report.scenario) == set(SCENARIOS)
    assert report[["MAE", "RMSE"]].notna().all().all()
    assert (report.MAE < 2.0).all()


def test_item_tasks_run_end_to_end_and_new_items_adapt(tmp_path):
    """task_key="item": meta-train on items, evaluate new items from their first ratings."""
    config = ExperimentConfig(
        dataset="synthetic",
        model=ModelConfig(name="cf", embedding_dim=8),
        learner=LearnerConfig(inner_steps=3, inner_lr=0.1, adapt="item_prior"),
        train=TrainConfig(meta_steps=150, pretrain_steps=150, batch_size=16, outer_lr=1e-2, jit_compile=False),
        task_key="item",
    )
    run = train(config, tmp_path, verbose=0)
    tasks = run.prepared.scenarios["item_cold"]
    assert len(tasks) > 5
    assert set(tasks.task_ids.tolist()) <= set(run.prepared.split.new_items.tolist())  # one task per new item
    report = evaluate(run, tmp_path)
    maml, frozen = _row(report, "maml", "item_cold"), _row(report, "no-adaptation", "item_cold")
    assert maml.MAE < frozen.MAE - 0.02, report.to_string()
    assert load_run(tmp_path).prepared.config.task_key == "item"
    with pytest.raises(ValueError, match="task_key"):
        ExperimentConfig(task_key="session")


def test_streaming_protocol_writes_its_curves_and_ratings_help(synthetic_run):
    run, workdir, _ = synthetic_run
    curve = streaming(run, workdir, points=(0, 1, 3, 10))
    assert set(curve.method) == {"incremental", "re-adapt", "fine-tune", "no adaptation"}
    table = curve.set_index(["method", "n"])["MAE"]
    for method in ("incremental", "re-adapt"):  # before any rating: the meta-learned prior, either way
        assert abs(table[(method, 0)] - table[("re-adapt", 0)]) < 1e-6
    assert table[("re-adapt", 10)] < table[("re-adapt", 0)] - 0.02, curve.to_string()
    for name in ("streaming.csv", "streaming.md", "streaming_MAE.png", "streaming_nDCG3.png"):
        assert (workdir / "streaming" / name).stat().st_size > 100
