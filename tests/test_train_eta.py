"""The time estimate before each run of `jams-pyg train` comes from the runs measured so far
and says so."""

import logging

from jams_pyg.cli import build_parser


def test_run_estimate_is_measured_and_states_its_assumption(tmp_path, monkeypatch, caplog):
    import jams_pyg.cli.train as cli_train
    import jams_pyg.eval.report as report
    import jams_pyg.train.experiment as experiment

    clock = [1000.0]
    monkeypatch.setattr(cli_train.time, "perf_counter", lambda: clock[0])

    def fake_run(config, save_model=None, **kwargs):
        clock[0] += 150.0 if config.variant == "backbone" else 90.0  # seconds per run
        return {"label": config.label}

    monkeypatch.setattr(experiment, "run_experiment", fake_run)
    monkeypatch.setattr(report, "write_report", lambda runs, base: None)
    parser = build_parser()
    args = parser.parse_args(["train", "--output-dir", str(tmp_path / "out"), "--variants",
                              "backbone", "jams", "no_mat"])
    with caplog.at_level(logging.INFO):
        runs = cli_train.train_variants(args, parser)
    assert len(runs) == 3
    starts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[")]
    assert starts[0].startswith("[1/3] ") and "left" not in starts[0]
    assert starts[1].endswith("(about 5 min 0 s left if each run still to come takes the "
                              "2 min 30 s the runs so far took on average)"), starts[1]
    assert starts[2].endswith("(about 2 min 0 s left if each run still to come takes the "
                              "2 min 0 s the runs so far took on average)"), starts[2]
