import re

from click.testing import CliRunner

from esc2c.cli import cli, main


def _row(out, *cells):
    return re.search(r"│\s*" + r"\s*│\s*".join(map(str, cells)) + r"\s*│", out)


def test_info_urbansound8k(shared_data):
    r = CliRunner().invoke(cli, ["datasets", "info", "--dataset", "urbansound8k",
                                 "--data-dir", str(shared_data / "urbansound8k")])
    assert r.exit_code == 0, r.output
    assert _row(r.output, 1, 873, 873, "complete")
    assert _row(r.output, 2, 888, 888, "complete")
    assert _row(r.output, 3, 387, 925, "538 missing")
    assert _row(r.output, 4, 0, 990, "no audio")
    assert _row(r.output, "all", 2148, 8732, "6584 missing")
    assert _row(r.output, "gun_shot", 96, 374)
    assert "2148 of 8732 listed clips found; 6584 missing." in r.output


def test_info_esc50(shared_data):
    r = CliRunner().invoke(cli, ["datasets", "info", "--dataset", "esc50", "--data-dir", str(shared_data / "esc50")])
    assert r.exit_code == 0, r.output
    assert _row(r.output, 4, 400, 400, "complete")
    assert _row(r.output, 2, 11, 400, "389 missing")
    assert "414 of 2000 listed clips found; 1586 missing." in r.output


def test_info_errors_exit_1_with_one_line(tmp_path, capsys):
    assert main(["datasets", "info", "--dataset", "esc50"]) == 1
    assert capsys.readouterr().err == "esc2c: error: dataset 'esc50' needs a data directory (--data-dir)\n"
    assert main(["datasets", "info", "--dataset", "esc50", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("esc2c: error: ") and "esc50.csv: metadata csv not found" in err and err.count("\n") == 1
