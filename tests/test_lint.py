"""The migration safety lint: every rule caught where it should be, nothing where it should not.

Pure parsing, no database. Each fixture under tests/fixtures/lint/<rule>/ is a valid migration set
(a base migration that creates the tables, then the migration at fault); the release rules'
fixtures hold two migrations that are fine one transaction each and fail when they share one.
Every fixture was also run against a real PostgreSQL 15: the error fixtures fail there the way
their rule says, the warning fixtures and the clean set apply.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from common.db.lint import RULES, Finding, lint_release, lint_set
from common.db.migrations import Migration, MigrationSet, load_migrations

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "lint"
SHIPPED = REPO / "schemas" / "migrations"
X_UP = "migration_20250102_000000_x_up.sql"

# rule -> every finding lint_set reports for tests/fixtures/lint/<rule>: (rule, severity, file, line, column)
FILE_RULES = {
    "syntax-error": [("syntax-error", "error", X_UP, 3, 58)],
    "psql-meta-command": [("psql-meta-command", "error", X_UP, 2, 1)],
    "transaction-control": [("transaction-control", "error", X_UP, 2, 1),
                            ("transaction-control", "error", X_UP, 4, 1)],
    "concurrently-in-transaction": [("concurrently-in-transaction", "error", X_UP, 2, 1)],
    "cannot-run-in-transaction": [("cannot-run-in-transaction", "error", X_UP, 3, 1)],
    "copy-stdio": [("copy-stdio", "error", X_UP, 2, 1)],
    "invalid-lint-ok": [("invalid-lint-ok", "error", X_UP, 1, 1),
                        ("index-on-existing-table", "warning", X_UP, 2, 1)],
    "enum-value-used-same-migration": [("enum-value-used-same-migration", "error", X_UP, 3, 1)],
    "pending-trigger-events": [("pending-trigger-events", "error", X_UP, 4, 1)],
    "cursor-left-open": [("cursor-left-open", "error", X_UP, 4, 1)],
    # the fixture's line 2 is "/* größer */ ALTER TABLE ...": column 14 counts characters, not bytes
    "alter-column-type": [("alter-column-type", "warning", X_UP, 2, 14)],
    "set-not-null": [("set-not-null", "warning", X_UP, 2, 1)],
    "foreign-key-without-not-valid": [("foreign-key-without-not-valid", "warning", X_UP, 3, 1)],
    "check-without-not-valid": [("check-without-not-valid", "warning", X_UP, 1, 1)],
    "index-on-existing-table": [("index-on-existing-table", "warning", X_UP, 2, 1)],
    "drop-table": [("drop-table", "warning", X_UP, 1, 1)],
    "drop-column": [("drop-column", "warning", X_UP, 1, 1)],
    "add-column-rewrite": [("add-column-rewrite", "warning", X_UP, 2, 1)],
    "not-null-column-without-default": [("not-null-column-without-default", "warning", X_UP, 1, 1)],
    "session-setting": [("session-setting", "warning", X_UP, 1, 1)],
    "unused-lint-ok": [("unused-lint-ok", "warning", X_UP, 1, 1)],
}

# rule -> what lint_release reports for the fixture's migrations after the base, and the other file
# of the pair, which the message names too
RELEASE_RULES = {
    "enum-value-used-later-in-release": (
        "error", "migration_20250103_000000_backfill_contained_up.sql", 2, 1,
        "migration_20250102_000000_add_contained_up.sql"),
    "pending-trigger-events-in-release": (
        "error", "migration_20250103_000000_note_author_up.sql", 2, 1,
        "migration_20250102_000000_import_notes_up.sql"),
    "cursor-left-open-in-release": (
        "error", "migration_20250103_000000_archived_up.sql", 1, 1,
        "migration_20250102_000000_sample_incidents_up.sql"),
    "setting-leaks-into-later-migration": (
        "warning", "migration_20250102_000000_backfill_severity_up.sql", 2, 1,
        "migration_20250103_000000_closed_at_up.sql"),
    "not-valid-validated-in-same-release": (
        "warning", "migration_20250103_000000_validate_severity_up.sql", 1, 1,
        "migration_20250102_000000_severity_check_up.sql"),
}

CONSTRUCTED = {"empty-migration", "missing-down"}  # load_migrations refuses these files itself


def fixture(name: str) -> MigrationSet:
    return load_migrations(FIXTURES / name)


def summary(findings: list[Finding]) -> list[tuple]:
    return [(f.rule, f.severity, os.path.basename(f.file), f.line, f.column) for f in findings]


def with_up(mset: MigrationSet, index: int, up_sql: str) -> MigrationSet:
    ms = list(mset.migrations)
    ms[index] = dataclasses.replace(ms[index], up_sql=up_sql)
    return dataclasses.replace(mset, migrations=tuple(ms))


def one_migration(up: str, down: str | None = "SELECT 1;\n") -> MigrationSet:
    d = Path("/nonexistent/migrations")
    m = Migration("20250101_000000", "x", d / "migration_20250101_000000_x_up.sql",
                  d / "migration_20250101_000000_x_down.sql", up, down, "", "")
    return MigrationSet(d, (m,), {})


# --- the rule table ---------------------------------------------------------------------------
def test_every_rule_has_a_fixture_or_a_constructed_case():
    assert set(RULES) == set(FILE_RULES) | set(RELEASE_RULES) | CONSTRUCTED
    for rule in set(FILE_RULES) | set(RELEASE_RULES):
        assert (FIXTURES / rule).is_dir(), rule


def test_rules_are_kebab_case_with_a_severity_and_a_description():
    for rule, (severity, description) in RULES.items():
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", rule), rule
        assert severity in ("error", "warning")
        assert description and "\n" not in description


# --- each rule, caught with its id, severity, file, line and column ----------------------------
@pytest.mark.parametrize("rule", sorted(FILE_RULES))
def test_rule_is_caught_at_its_statement(rule):
    assert summary(lint_set(fixture(rule))) == FILE_RULES[rule]


@pytest.mark.parametrize("rule", sorted(FILE_RULES))
def test_every_finding_says_why_and_what_instead(rule):
    for f in lint_set(fixture(rule)):
        assert f.message and f.why and f.instead
        assert f.file.endswith(".sql") and f.line >= 1 and f.column >= 1


def test_empty_migration_is_an_error():
    found = lint_set(one_migration("-- nothing yet\n;\n"))
    assert summary(found) == [("empty-migration", "error", "migration_20250101_000000_x_up.sql", 1, 1)]


def test_migration_without_down_is_an_error():
    found = lint_set(one_migration("CREATE TABLE t (id int);\n", down=None))
    assert summary(found) == [("missing-down", "error", "migration_20250101_000000_x_up.sql", 1, 1)]


def test_syntax_error_reports_the_parser_message_at_its_cursor():
    (f,) = lint_set(fixture("syntax-error"))
    assert f.message == 'syntax error at or near ","'


def test_psql_meta_command_is_reported_and_the_rest_of_the_file_still_linted():
    found = lint_set(one_migration("CREATE TABLE t (id int);\n  \\i other.sql\nVACUUM t;\n"))
    assert summary(found) == [
        ("psql-meta-command", "error", "migration_20250101_000000_x_up.sql", 2, 3),
        ("cannot-run-in-transaction", "error", "migration_20250101_000000_x_up.sql", 3, 1),
    ]


def test_backslashes_inside_strings_identifiers_and_comments_are_not_meta_commands():
    sql = ("SELECT E'a\\nb', 'C:\\dir', $$ \\set x $$, \"we\\ird\";\n"
           "-- \\set in a comment\n/* \\i in a block comment */ SELECT 1;\n")
    assert lint_set(one_migration(sql)) == []


def test_position_counts_characters_after_multibyte_text():
    sql = "-- Größe → später\nSELECT 'é€'; /* ü */ VACUUM;\n"
    (f,) = lint_set(one_migration(sql))
    assert (f.rule, f.line, f.column) == ("cannot-run-in-transaction", 2, 22)


def test_byte_offsets_convert_to_characters_when_the_parser_reports_bytes():
    from common.db.lint import _Offsets
    text = "é€ x"  # bytes: 2 + 3 + 1, so "x" is byte 6, character 3
    assert _Offsets(text, in_chars=False)(6) == 3
    assert _Offsets(text, in_chars=True)(3) == 3


def test_line_of_an_included_statement_counts_the_expanded_text_and_names_the_part():
    (f,) = lint_set(load_migrations(FIXTURES / "include" / "migrations"))
    assert (f.rule, os.path.basename(f.file), f.line, f.column) == (
        "index-on-existing-table", "migration_20250102_000000_severity_up.sql", 5, 1)
    assert "line 5 of the expanded text is line 4 of" in f.message
    assert str(FIXTURES / "include" / "parts" / "severity.sql") in f.message


def test_drops_are_allowed_in_down_migrations():
    # every fixture's down drops what its up created: no drop-table / drop-column there
    for rule in FILE_RULES:
        for f in lint_set(fixture(rule)):
            assert not (f.file.endswith("_down.sql") and f.rule in ("drop-table", "drop-column")), f.format()


def test_changes_to_a_table_created_in_the_same_migration_are_not_reported():
    sql = """
        CREATE TABLE t (id int PRIMARY KEY, a varchar(10), b int);
        CREATE INDEX ix_t_a ON t (a);
        ALTER TABLE t ALTER COLUMN a TYPE text, ALTER COLUMN b SET NOT NULL,
            ADD COLUMN u uuid NOT NULL DEFAULT gen_random_uuid(), ADD CONSTRAINT ck CHECK (b > 0),
            ADD CONSTRAINT fk FOREIGN KEY (b) REFERENCES t (id), ADD COLUMN c int NOT NULL;
        ALTER TABLE t DROP COLUMN c;
        DROP TABLE t;
    """
    assert lint_set(one_migration(sql), strict=True) == []


def test_set_not_null_after_validating_a_not_null_check_is_not_reported():
    mset = fixture("clean")
    assert lint_set(mset, strict=True) == []
    validate = mset.migrations[2]
    # without the VALIDATE of the IS NOT NULL check, SET NOT NULL scans the table again
    text = validate.up_sql.replace("ALTER TABLE incidents VALIDATE CONSTRAINT ck_incidents_severity_nn;\n", "")
    assert [f.rule for f in lint_set(with_up(mset, 2, text))] == ["set-not-null"]


@pytest.mark.parametrize("default, rewrites", [
    ("now()", False), ("CURRENT_TIMESTAMP", False), ("'n/a'", False), ("lower('X')", False),
    ("clock_timestamp()", True), ("random()", True), ("gen_random_uuid()", True),
])
def test_stable_default_is_stored_once_but_a_volatile_one_rewrites_the_table(default, rewrites):
    base = one_migration("CREATE TABLE t (id int);\n")
    add = dataclasses.replace(base.migrations[0], version="20250102_000000",
                              up_sql=f"ALTER TABLE t ADD COLUMN c text DEFAULT {default};\n")
    mset = dataclasses.replace(base, migrations=(base.migrations[0], add))
    assert [f.rule for f in lint_set(mset)] == (["add-column-rewrite"] if rewrites else [])


# --- acknowledgements -------------------------------------------------------------------------
WARNING_RULES = sorted(r for r, (sev, _) in RULES.items()
                       if sev == "warning" and r in FILE_RULES and r != "unused-lint-ok")


@pytest.mark.parametrize("rule", WARNING_RULES)
def test_ack_with_a_reason_silences_that_rule_for_that_file(rule):
    mset = fixture(rule)
    x = mset.migrations[1]
    acked = with_up(mset, 1, f"-- ransomeye:lint-ok {rule} reviewed: the table is tiny\n" + x.up_sql)
    assert lint_set(fixture(rule)) != []
    assert lint_set(acked, strict=True) == []


def test_ack_silences_only_the_named_rule():
    mset = fixture("set-not-null")
    acked = with_up(mset, 1, "-- ransomeye:lint-ok drop-table not this one\n" + mset.migrations[1].up_sql)
    assert [f.rule for f in lint_set(acked)] == ["unused-lint-ok", "set-not-null"]


@pytest.mark.parametrize("line, problem", [
    ("-- ransomeye:lint-ok set-not-null", "gives no reason"),
    ("-- ransomeye:lint-ok", "names no rule"),
    ("-- ransomeye:lint-ok no-such-rule because", "no such rule"),
    ("-- ransomeye:lint-ok concurrently-in-transaction we know", "cannot be acknowledged"),
    ("-- ransomeye:lintok set-not-null because", "unknown directive"),
])
def test_malformed_ack_is_an_error_and_silences_nothing(line, problem):
    mset = fixture("set-not-null")
    found = lint_set(with_up(mset, 1, line + "\n" + mset.migrations[1].up_sql))
    assert [(f.rule, f.severity, f.line) for f in found] == [
        ("invalid-lint-ok", "error", 1), ("set-not-null", "warning", 3)]
    assert problem in found[0].message


def test_module_docstring_documents_the_ack_syntax():
    import common.db.lint as lint
    assert "-- ransomeye:lint-ok <rule> <reason>" in lint.__doc__


# --- strict -----------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", sorted(FILE_RULES))
def test_strict_reports_every_warning_as_an_error_at_the_same_place(rule):
    plain = summary(lint_set(fixture(rule)))
    strict = summary(lint_set(fixture(rule), strict=True))
    assert strict == [(r, "error", f, line, col) for r, _, f, line, col in plain]


def test_clean_migrations_pass_strict():
    assert lint_set(fixture("clean"), strict=True) == []


# --- atomic release ---------------------------------------------------------------------------
@pytest.mark.parametrize("rule", sorted(RELEASE_RULES))
def test_release_rule_is_caught_across_two_migrations(rule):
    severity, file, line, col, other_file = RELEASE_RULES[rule]
    mset = fixture(rule)
    assert lint_set(mset, strict=True) == []  # each migration alone is fine
    expected = [(rule, severity, file, line, col)]
    assert summary(lint_release(mset.migrations[1:], earlier=mset.migrations[:1])) == expected
    # the runner's call: the whole plan, nothing earlier (here the base is part of the release)
    assert summary(lint_release(mset.migrations)) == expected
    (f,) = lint_release(mset.migrations)
    assert other_file in f.message


def test_enum_value_used_later_in_release_is_caught_without_knowing_the_earlier_migrations():
    # the runner passes only the pending migrations: "incidents" is a table the lint never saw created
    mset = fixture("enum-value-used-later-in-release")
    assert [f.rule for f in lint_release(mset.migrations[1:])] == ["enum-value-used-later-in-release"]
    # a table the release only alters is still not fully known
    first = mset.migrations[1]
    altering = with_up(mset, 1, first.up_sql + "ALTER TABLE incidents ADD COLUMN contained_at timestamptz;\n")
    assert [f.rule for f in lint_release(altering.migrations[1:])] == ["enum-value-used-later-in-release"]


def test_enum_value_used_later_in_release_names_both_files_and_how_to_split():
    mset = fixture("enum-value-used-later-in-release")
    (f,) = lint_release(mset.migrations)
    assert f.file.endswith("migration_20250103_000000_backfill_contained_up.sql")
    assert "migration_20250102_000000_add_contained_up.sql" in f.message
    assert "migration_20250102_000000_add_contained_up.sql" in f.instead
    assert "migration_20250103_000000_backfill_contained_up.sql" in f.instead
    assert "releases.toml" in f.instead and "20250102_000000" in f.instead


def test_release_rules_stay_out_of_lint_set_and_file_rules_out_of_lint_release():
    release = set(RELEASE_RULES)
    for rule in FILE_RULES:
        assert not {f.rule for f in lint_release(fixture(rule).migrations)} - release
    for rule in RELEASE_RULES:
        assert not {f.rule for f in lint_set(fixture(rule))} & release


def test_ack_in_the_later_file_silences_a_release_rule():
    mset = fixture("enum-value-used-later-in-release")
    later = mset.migrations[2]
    ack = "-- ransomeye:lint-ok enum-value-used-later-in-release the installer applies these per migration\n"
    acked = with_up(mset, 2, ack + later.up_sql)
    assert lint_release(acked.migrations) == []
    assert lint_set(acked) == []  # a release-rule ack is not reported unused by lint_set


def test_set_constraints_immediate_ends_the_pending_checks():
    mset = fixture("pending-trigger-events-in-release")
    first = mset.migrations[1]
    fixed = with_up(mset, 1, first.up_sql + "SET CONSTRAINTS ALL IMMEDIATE;\n")
    assert lint_release(fixed.migrations) == []


def test_close_ends_the_cursor():
    mset = fixture("cursor-left-open-in-release")
    first = mset.migrations[1]
    assert lint_release(with_up(mset, 1, first.up_sql + "CLOSE sample;\n").migrations) == []
    assert lint_release(with_up(mset, 1, first.up_sql + "CLOSE ALL;\n").migrations) == []


def test_clean_set_as_one_release_has_warnings_only():
    found = lint_release(fixture("clean").migrations)
    assert {f.severity for f in found} == {"warning"}
    assert {f.rule for f in found} == {"setting-leaks-into-later-migration", "not-valid-validated-in-same-release"}
    assert summary(lint_release(fixture("clean").migrations, strict=True))[0][1] == "error"


# --- the shipped migrations -------------------------------------------------------------------
def test_shipped_migrations_pass_strict_with_zero_findings():
    mset = load_migrations(SHIPPED)
    assert mset.migrations
    assert [f.format() for f in lint_set(mset, strict=True)] == []


def test_shipped_migrations_can_run_as_one_release():
    mset = load_migrations(SHIPPED)
    assert [f.format() for f in lint_release(mset.migrations) if f.severity == "error"] == []


# --- the Finding's two faces ----------------------------------------------------------------------
def test_finding_formats_as_one_line_and_serialises_every_field():
    (f,) = lint_set(fixture("concurrently-in-transaction"))
    line = f.format()
    assert line.startswith(f"{f.file}:2:1: error [concurrently-in-transaction] CREATE INDEX CONCURRENTLY")
    assert " — PostgreSQL refuses it" in line and ". Instead: " in line and "\n" not in line
    assert f.to_json() == {"file": f.file, "line": 2, "column": 1, "rule": "concurrently-in-transaction",
                           "severity": "error", "message": f.message, "why": f.why, "instead": f.instead}
