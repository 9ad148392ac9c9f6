"""The benchmark and soak commands run end to end at a tiny size (a smoke test, not a timed test)."""
from tests import perf


def test_benchmark_command_runs_small(capsys, tmp_path):
    out = tmp_path / "perf.md"
    assert perf.main(["--migrations", "4", "--repeat", "1", "--tables", "5", "--markdown", str(out)]) == 0
    text = out.read_text()
    assert "psql, one session" in text and "no-op re-run" in text and "Core's check" in text and "--atomic" in text
    assert "import psycopg" in text and "no lint record" in text
