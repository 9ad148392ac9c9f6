"""A bad migration set is refused before the database is touched: exit 15, naming the file."""
from __future__ import annotations

import os

import pytest

from tests.helpers import runner, tables, write_set

GOOD = {"20250102_000000_first": ("CREATE TABLE first (id int);", "DROP TABLE first;")}


def _bad_name(d):
    (d / "migration_2025_first_up.sql").write_text("SELECT 1;")


def _impossible_date(d):
    write_set(d, {"20251340_000000_x": ("SELECT 1;", "SELECT 1;")})


def _uppercase_description(d):
    write_set(d, {"20250103_000000_Second": ("SELECT 1;", "SELECT 1;")})


def _stray_sql_file(d):
    (d / "fix.sql").write_text("SELECT 1;")


def _duplicate_version(d):
    write_set(d, {"20250102_000000_other": ("SELECT 1;", "SELECT 1;")})


def _missing_down(d):
    (d / "migration_20250103_000000_second_up.sql").write_text("SELECT 1;")


def _missing_up(d):
    (d / "migration_20250103_000000_second_down.sql").write_text("SELECT 1;")


def _empty_file(d):
    write_set(d, {"20250103_000000_empty": ("", "SELECT 1;")})


def _comments_only(d):
    write_set(d, {"20250103_000000_empty": ("-- nothing here\n/* still nothing */\n", "SELECT 1;")})


def _not_utf8(d):
    write_set(d, {"20250103_000000_latin1": ("SELECT 1;", "SELECT 1;")})
    (d / "migration_20250103_000000_latin1_up.sql").write_bytes("SELECT 'caf\xe9';".encode("latin-1"))


def _bom(d):
    write_set(d, {"20250103_000000_bom": ("SELECT 1;", "SELECT 1;")})
    (d / "migration_20250103_000000_bom_up.sql").write_bytes(b"\xef\xbb\xbfSELECT 1;")


def _symlink_out(d):
    outside = d.parent / "outside.sql"
    outside.write_text("DROP TABLE first;")
    write_set(d, {"20250103_000000_link": ("SELECT 1;", "SELECT 1;")})
    os.remove(d / "migration_20250103_000000_link_up.sql")
    os.symlink(outside, d / "migration_20250103_000000_link_up.sql")


def _directory_in_the_way(d):
    (d / "migration_20250103_000000_dir_up.sql").mkdir()
    (d / "migration_20250103_000000_dir_down.sql").write_text("SELECT 1;")


def _include_escaping_the_schema_root(d):
    write_set(d, {"20250103_000000_inc": ("-- ransomeye:include ../../../etc/passwd\n", "SELECT 1;")})


def _bad_releases_file(d):
    (d / "releases.toml").write_text('[releases]\n"1.0" = "20250102_000000"\n')


def _release_names_unknown_migration(d):
    (d / "releases.toml").write_text('[releases]\n"1.0.0" = "20990101_000000"\n')


CASES = {
    "malformed file name": (_bad_name, "migration_2025_first_up.sql"),
    "impossible date": (_impossible_date, "not a real date"),
    "upper-case description": (_uppercase_description, "Second"),
    "stray .sql file": (_stray_sql_file, "fix.sql"),
    "duplicate version": (_duplicate_version, "duplicate version 20250102_000000"),
    "missing down": (_missing_down, "no matching _down.sql"),
    "missing up": (_missing_up, "no matching _up.sql"),
    "empty file": (_empty_file, "is empty"),
    "comments only": (_comments_only, "is empty"),
    "not UTF-8": (_not_utf8, "not valid UTF-8"),
    "byte-order mark": (_bom, "byte-order mark"),
    "symlink out of the directory": (_symlink_out, "outside"),
    "directory instead of a file": (_directory_in_the_way, "not a regular file"),
    "include escaping the schema root": (_include_escaping_the_schema_root, "outside"),
    "bad releases.toml": (_bad_releases_file, "bad release entry"),
    "release naming an unknown migration": (_release_names_unknown_migration, "not in the set"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_migration_set_exits_15_naming_the_file_and_changes_nothing(db, tmp_path, case):
    make, expected = CASES[case]
    d = write_set(tmp_path / "schemas" / "migrations", GOOD)
    make(d)
    r = runner("upgrade", "--migrations-dir", str(d), dsn=db)
    assert r.code == 15, (r.code, r.stderr)
    assert expected in r.stderr
    assert "Nothing was applied" in r.stderr or "nothing" in r.stderr.lower()
    assert tables(db) == [], "the database must not be touched, not even the tracking tables"


def test_missing_directory_exits_15(db, tmp_path):
    r = runner("upgrade", "--migrations-dir", str(tmp_path / "nope"), dsn=db)
    assert r.code == 15 and "does not exist" in r.stderr


def test_symlink_inside_the_directory_is_accepted(db, tmp_path):
    d = write_set(tmp_path / "m", GOOD)
    (d / "shared.sql").unlink(missing_ok=True)
    write_set(tmp_path / "m", {"20250103_000000_link": ("SELECT 1;", "SELECT 1;")})
    target = d / ".real_up.sql"
    target.write_text("CREATE TABLE linked (id int);")
    os.remove(d / "migration_20250103_000000_link_up.sql")
    os.symlink(target, d / "migration_20250103_000000_link_up.sql")
    assert runner("upgrade", "--migrations-dir", str(d), dsn=db).code == 0
    assert "linked" in tables(db)


def test_readme_and_dotfiles_are_ignored(db, tmp_path):
    d = write_set(tmp_path / "m", GOOD)
    (d / "README.md").write_text("# notes")
    (d / ".migration_20250102_000000_first_up.sql.swp").write_bytes(b"\x00\x01")
    assert runner("upgrade", "--migrations-dir", str(d), dsn=db).code == 0
