"""Migration safety lint: what PostgreSQL refuses inside a migration's transaction, and what locks or
rewrites a table that already holds data. No database in here: every check reads the parse tree that
``pglast.parse_sql`` (the real PostgreSQL parser) builds from a migration's expanded SQL.

Two entry points, both pure::

    lint_set(mset, strict=False)   every migration's up and down file, each as its own transaction
    lint_release(migrations, earlier=(), strict=False)
                                   what breaks only when several migrations share ONE transaction
                                   (the runner's atomic release mode); ``earlier`` are the migrations
                                   applied before the release, so the lint knows their tables

``RULES`` lists every rule id with its severity and a one-line description. Errors are statements the
server refuses (the migration would fail and roll back) or files the runner cannot run; warnings
are changes that run, but block Core or rewrite a table while they do. ``strict`` reports warnings
as errors.

Acknowledging a finding
-----------------------
A judgment call -- every warning, and the two error rules that guess from the parse tree
(``enum-value-used-same-migration``, ``pending-trigger-events`` and their release forms) -- can be
acknowledged for one file with a comment line anywhere in that file::

    -- ransomeye:lint-ok <rule> <reason>
    -- ransomeye:lint-ok index-on-existing-table policies holds a few hundred rows

The reason is mandatory. An acknowledgement without a reason, naming an unknown rule, or naming a
rule that cannot be acknowledged (the server refuses those statements whatever the reason) is
itself an error (``invalid-lint-ok``); one that silences nothing is a warning (``unused-lint-ok``).
Release rules are acknowledged in the later of the two files.

Positions
---------
Every finding names ``file:line:column`` (1-based; the column counts characters, not bytes) of
the first token of the statement at fault, of the backslash of a psql meta-command, of the parser's
error cursor, or of the acknowledgement comment. A file built with ``-- ransomeye:include`` is
linted as the SQL that runs, so its line numbers count lines of the *expanded* text; when the
statement came from an included file, the message also names that file and its own line.

Simplifications (documented, deliberate)
----------------------------------------
* "Existing table" means any table the migration did not create itself earlier in the same file.
* Tables, types and constraints are matched by name without schema; the model of the schema that
  the later checks consult (enum columns, deferred constraints, partitioned tables, NOT NULL
  checks) is built from the set's own up migrations, in order.
* ``SET NOT NULL`` is not reported when the same file earlier adds a validated
  ``CHECK (col IS NOT NULL)``, or validates (``VALIDATE CONSTRAINT``) such a check added NOT VALID
  by this or an earlier migration -- PostgreSQL then skips its own full-table scan.
* An enum value counts as used by a statement that contains that string literal and either names
  the enum type (a cast, a column definition, ``enum_range``) or touches a table with a column of
  that type or a table the lint has not seen created -- so ``status::text = 'new'`` is a false
  positive; acknowledge it.
* Pending trigger events are predicted from deferred foreign keys (``INITIALLY DEFERRED``, or
  ``DEFERRABLE`` after ``SET CONSTRAINTS ... DEFERRED``) and deferred constraint triggers; rows
  are assumed to be affected. Deferred UNIQUE/EXCLUDE constraints queue events only on
  transient conflicts and are not predicted.
* A cursor is taken to read the tables its query names (not those behind a view).
* plpgsql bodies are inspected only for COMMIT/ROLLBACK (``DO`` blocks, procedures then CALLed).
"""
from __future__ import annotations

import bisect
import functools
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import pglast
from pglast import ast
from pglast.enums import (
    AlterSubscriptionType,
    AlterTableType,
    CmdType,
    ConstrType,
    DiscardMode,
    NullTestType,
    ObjectType,
    ReindexObjectType,
    TransactionStmtKind,
    VariableSetKind,
)
from pglast.parser import ParseError, scan

from .migrations import INCLUDE_RE, Migration, MigrationSet

__all__ = ["Finding", "RULES", "lint_set", "lint_release"]

ERROR = "error"
WARNING = "warning"


# ---------------------------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Rule:
    severity: str
    description: str
    why: str
    instead: str
    ackable: bool = False
    scope: str = "file"  # "file": lint_set; "release": lint_release


_NOT_VALID_SPLIT = (
    "add it NOT VALID in this migration (a brief lock, no scan) and run "
    "ALTER TABLE ... VALIDATE CONSTRAINT in a later migration (SHARE UPDATE EXCLUSIVE: reads and "
    "writes continue)"
)

_RULES: dict[str, _Rule] = {
    # --- errors: the server refuses it, or the runner cannot run the file --------------------
    "syntax-error": _Rule(
        ERROR, "the file does not parse as PostgreSQL SQL",
        "the server rejects the statement and the migration rolls back",
        "fix the statement; running the file with psql against a scratch database shows the same error."),
    "psql-meta-command": _Rule(
        ERROR, "a psql meta-command (backslash command) in a migration",
        "the runner sends the file to the server as SQL; only psql understands backslash commands, so the server "
        "rejects the file",
        "write it in SQL (SET LOCAL instead of \\set, a '-- ransomeye:include <path>' line instead of \\i or \\ir) "
        "or remove it."),
    "empty-migration": _Rule(
        ERROR, "the file contains no SQL statement",
        "an empty migration records a version that changes nothing, usually a file saved before it was written",
        "write the migration's SQL, or delete the pair."),
    "missing-down": _Rule(
        ERROR, "a migration without a down file",
        "without a down the release cannot be downgraded past this migration",
        "add migration_<version>_<description>_down.sql that undoes the up."),
    "transaction-control": _Rule(
        ERROR, "transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, SET TRANSACTION, ...) inside a migration",
        "the runner runs each migration (in atomic mode the whole release) and its history row in ONE transaction; "
        "a COMMIT or ROLLBACK inside ends that transaction early, so a later failure leaves a half-applied migration "
        "that the history does not record",
        "remove it: the runner opens and commits the transaction. To commit in two steps, write two migrations."),
    "concurrently-in-transaction": _Rule(
        ERROR, "CONCURRENTLY (index build, drop, reindex, partition detach) inside a transaction block",
        "PostgreSQL refuses it inside a transaction block (SQLSTATE 25001) and every migration runs inside one",
        "use the plain form (it blocks writes to the table while it runs: fine for a new or small table), or have an "
        "operator build the index CONCURRENTLY before the upgrade and ship CREATE INDEX IF NOT EXISTS, acknowledged "
        "(index-on-existing-table): it finds the index and does nothing."),
    "cannot-run-in-transaction": _Rule(
        ERROR, "a statement PostgreSQL refuses inside a transaction block (VACUUM, CREATE/DROP DATABASE or "
        "TABLESPACE, ALTER SYSTEM, ...)",
        "PostgreSQL refuses it inside a transaction block (SQLSTATE 25001) and every migration runs inside one",
        "do it outside the migrations, in the installer or an operator step: databases, tablespaces, VACUUM, server "
        "settings and subscriptions are deployment concerns, not schema changes."),
    "copy-stdio": _Rule(
        ERROR, "COPY ... FROM STDIN / TO STDOUT in a migration",
        "the runner sends no COPY data and reads none; the statement waits for data and leaves the connection unusable",
        "write the rows as INSERT ... VALUES (or INSERT ... SELECT), or load bulk data outside the migrations."),
    "invalid-lint-ok": _Rule(
        ERROR, "a malformed '-- ransomeye:lint-ok' acknowledgement",
        "an acknowledgement that names no rule, an unknown rule or no reason silences nothing a reviewer can check",
        "write '-- ransomeye:lint-ok <rule> <reason>' with a rule from the lint's rule list and why it is safe here."),
    "enum-value-used-same-migration": _Rule(
        ERROR, "an enum value added (ALTER TYPE ... ADD VALUE) and used in the same migration",
        "PostgreSQL refuses to use a new enum value before the transaction that added it commits "
        "(SQLSTATE 55P04 'unsafe use of new value'), and a migration is one transaction",
        "add the value in one migration and use it in a later one.", ackable=True),
    "pending-trigger-events": _Rule(
        ERROR, "a table altered, indexed, dropped, truncated or clustered after rows were written under a "
        "deferred constraint",
        "the deferred foreign-key or constraint-trigger checks wait until COMMIT, and PostgreSQL refuses to change a "
        "table with pending checks (SQLSTATE 55006 'pending trigger events')",
        "run SET CONSTRAINTS ALL IMMEDIATE after the data change, or move the data change to a later migration.",
        ackable=True),
    "cursor-left-open": _Rule(
        ERROR, "a table altered, indexed, dropped, truncated or clustered while a cursor over it is still open",
        "PostgreSQL refuses to change a table that an open cursor of the same session reads "
        "(SQLSTATE 55006 'being used by active queries in this session')",
        "CLOSE the cursor first (or use a DO block or a plain UPDATE ... FROM instead of a cursor)."),
    # --- release: only when several migrations share one transaction ------------------------
    "enum-value-used-later-in-release": _Rule(
        ERROR, "an enum value added in one migration and used by a later migration of the same atomic release",
        "in atomic mode the whole release is one transaction, and PostgreSQL refuses a new enum value before the "
        "transaction that added it commits (SQLSTATE 55P04 'unsafe use of new value')",
        "split the release between the two migrations, or apply it per migration.", ackable=True, scope="release"),
    "pending-trigger-events-in-release": _Rule(
        ERROR, "a table changed by a later migration after an earlier migration of the same atomic release wrote "
        "rows under a deferred constraint",
        "in atomic mode the deferred checks of the earlier migration are still pending when the later one runs, and "
        "PostgreSQL refuses to change a table with pending checks (SQLSTATE 55006)",
        "end the earlier migration with SET CONSTRAINTS ALL IMMEDIATE, or split the release between the two.",
        ackable=True, scope="release"),
    "cursor-left-open-in-release": _Rule(
        ERROR, "a table changed by a later migration of an atomic release while a cursor an earlier one opened is still open",
        "a cursor lasts until COMMIT, so in atomic mode it is still open when the later migration runs, and PostgreSQL "
        "refuses to change a table an open cursor reads (SQLSTATE 55006 'being used by active queries')",
        "CLOSE the cursor at the end of the migration that opens it.", scope="release"),
    "setting-leaks-into-later-migration": _Rule(
        WARNING, "SET LOCAL / SET CONSTRAINTS in one migration still in force in the later migrations of an "
        "atomic release",
        "a transaction-scoped setting lasts until COMMIT, so in atomic mode it changes how every later migration of "
        "the release runs, and differently than in per-migration mode",
        "reset it at the end of the migration (RESET name, SET CONSTRAINTS ALL IMMEDIATE).",
        ackable=True, scope="release"),
    "not-valid-validated-in-same-release": _Rule(
        WARNING, "a constraint added NOT VALID and validated by a later migration of the same atomic release",
        "in atomic mode both run in one transaction, so the lock taken by ADD CONSTRAINT is still held during the "
        "validation scan: the NOT VALID split buys nothing",
        "ship the VALIDATE CONSTRAINT migration in a later release than the one that adds the constraint.",
        ackable=True, scope="release"),
    # --- warnings: runs, but locks or rewrites a table that holds data ----------------------
    "alter-column-type": _Rule(
        WARNING, "ALTER COLUMN ... TYPE on an existing table",
        "it takes an ACCESS EXCLUSIVE lock (Core can neither read nor write the table) and rewrites the table and "
        "its indexes unless the new type is binary-compatible",
        "add a new column, backfill it in batches, switch Core over, then drop the old column in a later release.",
        ackable=True),
    "set-not-null": _Rule(
        WARNING, "SET NOT NULL on an existing table",
        "it holds an ACCESS EXCLUSIVE lock while it scans the whole table for NULLs",
        "add CHECK (col IS NOT NULL) NOT VALID in one migration, VALIDATE CONSTRAINT it in a later one; SET NOT NULL "
        "after the validation then needs no scan (and the check can be dropped).", ackable=True),
    "foreign-key-without-not-valid": _Rule(
        WARNING, "a FOREIGN KEY added to an existing table without NOT VALID",
        "validating it scans the whole table while writes to it and to the referenced table are blocked",
        _NOT_VALID_SPLIT + ".", ackable=True),
    "check-without-not-valid": _Rule(
        WARNING, "a CHECK constraint added to an existing table without NOT VALID",
        "validating it scans the whole table under an ACCESS EXCLUSIVE lock",
        _NOT_VALID_SPLIT + ".", ackable=True),
    "index-on-existing-table": _Rule(
        WARNING, "an index built (CREATE INDEX, or ADD PRIMARY KEY / UNIQUE / EXCLUDE) on an existing table",
        "without CONCURRENTLY (impossible inside a transaction) the build blocks every write to the table until "
        "it finishes",
        "acknowledge it for a small table; for a large one have an operator build the index CONCURRENTLY before the "
        "upgrade and ship CREATE INDEX IF NOT EXISTS (or ADD CONSTRAINT ... USING INDEX), acknowledged.", ackable=True),
    "drop-table": _Rule(
        WARNING, "DROP TABLE in an up migration",
        "the data is gone for good: the down can recreate the table but not its rows, and a Core still running the "
        "previous release loses the table mid-upgrade",
        "stop using the table in one release and drop it in a later one, after a backup; acknowledge when the data "
        "is disposable.", ackable=True),
    "drop-column": _Rule(
        WARNING, "DROP COLUMN in an up migration",
        "the data in the column is gone for good (the down can add the column back, empty), and a Core still running "
        "the previous release fails on it",
        "stop using the column in one release and drop it in a later one; acknowledge when the data is disposable.",
        ackable=True),
    "add-column-rewrite": _Rule(
        WARNING, "ADD COLUMN that rewrites an existing table (volatile default, serial, identity, stored "
        "generated column)",
        "every row gets its own value, so PostgreSQL rewrites the whole table under an ACCESS EXCLUSIVE lock; a "
        "constant or stable default such as now() is stored once and needs no rewrite",
        "add the column without the default (or with a constant one), set the default separately "
        "(ALTER COLUMN ... SET DEFAULT), and backfill existing rows in batches.", ackable=True),
    "not-null-column-without-default": _Rule(
        WARNING, "ADD COLUMN ... NOT NULL without a DEFAULT on an existing table",
        "PostgreSQL refuses it as soon as the table holds a row (SQLSTATE 23502), so the migration passes on an empty "
        "test database and fails in production",
        "give the column a constant DEFAULT, or add it nullable, backfill, then make it NOT NULL.", ackable=True),
    "session-setting": _Rule(
        WARNING, "a session-level SET (without LOCAL) in a migration",
        "it outlives the migration's transaction and silently changes every later migration and the runner's own "
        "statements on the same connection",
        "use SET LOCAL (or set_config(name, value, true)), which ends with the migration's transaction.",
        ackable=True),
    "unused-lint-ok": _Rule(
        WARNING, "a '-- ransomeye:lint-ok' acknowledgement that silences nothing",
        "a stale acknowledgement would silently excuse the next, unreviewed change of that kind",
        "delete the line."),
}

RULES: dict[str, tuple[str, str]] = {rule: (r.severity, r.description) for rule, r in _RULES.items()}


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    column: int
    rule: str            # stable kebab-case id, a key of RULES
    severity: str        # "error" | "warning"
    message: str         # what is wrong
    why: str             # why it matters
    instead: str         # what to do instead

    def to_json(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        return (f"{self.file}:{self.line}:{self.column}: {self.severity} [{self.rule}] {self.message} — "
                f"{self.why.rstrip('.')}. Instead: {self.instead}")


# ---------------------------------------------------------------------------------------------
# Positions: pglast's offsets -> character index -> line and column
# ---------------------------------------------------------------------------------------------
@functools.cache
def _offset_units() -> tuple[bool, bool]:
    """Whether parse_sql / scan report offsets in characters (True) or UTF-8 bytes (False).

    PostgreSQL's own RawStmt.stmt_location is a byte offset; pglast 8 converts it (and every
    node and token location) to a character index. Probe once rather than trust either.
    """
    probe = "SELECT 'é'; SELECT 1"
    want = probe.rindex("SELECT")
    parse_chars = pglast.parse_sql(probe)[1].stmt_location == want
    scan_chars = [t.start for t in scan(probe) if t.name == "SELECT"][1] == want
    return parse_chars, scan_chars


class _Offsets:
    def __init__(self, text: str, in_chars: bool) -> None:
        self.text = text
        self.in_chars = in_chars or text.isascii()
        self._utf8 = None if self.in_chars else text.encode("utf-8")

    def __call__(self, offset: int) -> int:
        if self.in_chars:
            return offset
        return len(self._utf8[:offset].decode("utf-8", errors="ignore"))


class _Source:
    """One file's expanded text, with line starts and (for includes) where each line came from."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
        self.segments = _include_segments(path, text)

    def position(self, index: int) -> tuple[int, int]:
        index = max(0, min(index, len(self.text)))
        line = bisect.bisect_right(self.line_starts, index)
        return line, index - self.line_starts[line - 1] + 1

    def origin_note(self, line: int) -> str:
        for first, count, included in self.segments:
            if first <= line < first + count:
                return (f" (line {line} of the expanded text is line {line - first + 1} of {included}, "
                        f"which this file includes)")
        return ""


def _include_segments(path: str, expanded: str) -> list[tuple[int, int, str]]:
    """(first expanded line, line count, included file) for each include line of ``path``.

    Re-reads the file and its includes the way ``migrations._expand`` does, and gives up (no
    notes, expanded line numbers only) unless that reproduces ``expanded`` exactly.
    """
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeError, ValueError):
        return []
    if not any(INCLUDE_RE.match(line.strip()) for line in raw.splitlines()):
        return []
    segments, rebuilt, line_no = [], [], 1
    for line in raw.splitlines(keepends=True):
        m = INCLUDE_RE.match(line.strip())
        if not m:
            rebuilt.append(line)
            line_no += 1
            continue
        target = os.path.normpath(os.path.join(os.path.dirname(path), m.group("path")))
        try:
            included = Path(target).read_text(encoding="utf-8")
        except (OSError, UnicodeError, ValueError):
            return []
        if included and not included.endswith("\n"):
            included += "\n"
        count = len(included.splitlines())
        segments.append((line_no, count, target))
        rebuilt.append(included)
        line_no += count
    return segments if "".join(rebuilt) == expanded else []


# ---------------------------------------------------------------------------------------------
# Reading a file: psql meta-commands, comments, statements
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Stmt:
    start: int       # character index of the statement's first token
    end: int         # character index just past the statement
    node: ast.Node


@dataclass(frozen=True)
class _Prepared:
    text: str                                 # the file with psql meta-commands blanked out
    metas: tuple[tuple[int, str], ...]        # (index of the backslash, the command)
    comments: tuple[tuple[int, str, str], ...]  # (index, token name, comment text)
    stmts: tuple[_Stmt, ...]
    error: tuple[str, int] | None             # parser message and character index


def _scan_prefix(text: str) -> list[tuple[int, int, str]]:
    """Tokens (start, end exclusive, name) as character indexes, of the longest prefix that scans."""
    _, scan_chars = _offset_units()
    offs = _Offsets(text, scan_chars)
    try:
        tokens = scan(text)
    except ParseError as exc:
        cut = exc.args[1] if len(exc.args) > 1 else None
        if not cut:
            return []
        try:
            tokens = scan(text[:cut])
        except ParseError:
            return []
    return [(offs(t.start), offs(t.end + 1), t.name) for t in tokens]


@functools.lru_cache(maxsize=512)
def _prepare(text: str) -> _Prepared:
    # psql meta-commands first: the parser fails on them. The scanner (the server's own lexer)
    # returns a backslash outside strings, identifiers and comments as its own token; psql reads
    # the command from there to the end of the line. Blank it (same length, so every position
    # stays valid) and look again.
    metas = []
    while True:
        tokens = _scan_prefix(text)
        backslash = next((t for t in tokens if t[2] == "ASCII_92"), None)
        if backslash is None:
            break
        start = backslash[0]
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        metas.append((start, text[start:end].strip()))
        text = text[:start] + " " * (end - start) + text[end:]
    comments = tuple((s, name, text[s:e]) for s, e, name in tokens if name in ("SQL_COMMENT", "C_COMMENT"))
    code_starts = [s for s, _, name in tokens if name not in ("SQL_COMMENT", "C_COMMENT")]
    parse_chars, _ = _offset_units()
    offs = _Offsets(text, parse_chars)
    try:
        raw = pglast.parse_sql(text)
    except ParseError as exc:
        where = exc.args[1] if len(exc.args) > 1 and exc.args[1] is not None else len(text.rstrip())
        return _Prepared(text, tuple(metas), comments, (), (exc.args[0], where))
    stmts = []
    for r in raw:
        start = offs(r.stmt_location)
        end = offs(r.stmt_location + r.stmt_len) if r.stmt_len else len(text)
        i = bisect.bisect_left(code_starts, start)
        if i < len(code_starts) and code_starts[i] < end:
            start = code_starts[i]  # skip leading whitespace and comments
        stmts.append(_Stmt(start, end, r.stmt))
    return _Prepared(text, tuple(metas), comments, tuple(stmts), None)


_ACK_RE = re.compile(r"^--+\s*ransomeye\s*:\s*lint(?P<tail>\S*)(?P<rest>.*)$", re.I | re.S)


@dataclass
class _Ack:
    rule: str
    reason: str
    index: int
    used: bool = False


def _read_acks(prep: _Prepared) -> tuple[dict[str, list[_Ack]], list[tuple[int, str]]]:
    """Acknowledgement comments -> ({rule: [acks]}, [(index, problem)])."""
    acks: dict[str, list[_Ack]] = {}
    problems: list[tuple[int, str]] = []
    for index, kind, text in prep.comments:
        if kind == "C_COMMENT":
            if "ransomeye:lint" in text.lower():
                problems.append((index, "an acknowledgement inside /* */ is not read; write it as a "
                                        "'-- ransomeye:lint-ok <rule> <reason>' line"))
            continue
        m = _ACK_RE.match(text.strip())
        if not m:
            continue
        if m["tail"].lower() != "-ok":
            problems.append((index, f"unknown directive 'ransomeye:lint{m['tail']}'; the acknowledgement is "
                                    f"'ransomeye:lint-ok <rule> <reason>'"))
            continue
        words = m["rest"].split(None, 1)
        if not words:
            problems.append((index, "'ransomeye:lint-ok' names no rule and gives no reason"))
            continue
        rule, reason = words[0], (words[1].strip() if len(words) > 1 else "")
        if rule not in _RULES:
            problems.append((index, f"'ransomeye:lint-ok {rule}': no such rule"))
        elif not _RULES[rule].ackable:
            problems.append((index, f"'ransomeye:lint-ok {rule}': {rule} cannot be acknowledged; only judgment "
                                    f"calls can, and this one fails whatever the reason"))
        elif not reason:
            problems.append((index, f"'ransomeye:lint-ok {rule}' gives no reason; say why it is safe here"))
        else:
            acks.setdefault(rule, []).append(_Ack(rule, reason, index))
    return acks, problems


# ---------------------------------------------------------------------------------------------
# Parse-tree helpers
# ---------------------------------------------------------------------------------------------
def _children(node) -> Iterator:
    if isinstance(node, ast.Node):
        for name in node.__slots__:
            value = getattr(node, name, None)
            if isinstance(value, (ast.Node, tuple, list)):
                yield value
    elif isinstance(node, (tuple, list)):
        yield from node


def _walk(node) -> Iterator[ast.Node]:
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Node):
            yield n
        stack.extend(_children(n))


def _last(names) -> str:
    return names[-1].sval if names else ""


def _type(tn: ast.TypeName | None) -> str:
    return _last(tn.names) if tn is not None and tn.names else ""


def _const_strings(node) -> set[str]:
    return {n.val.sval for n in _walk(node) if isinstance(n, ast.A_Const) and isinstance(n.val, ast.String)}


def _type_names(node) -> set[str]:
    return {_type(n) for n in _walk(node) if isinstance(n, ast.TypeName)}


def _relations(node) -> set[str]:
    """Tables a statement names (WITH queries excluded)."""
    nodes = list(_walk(node))
    ctes = {n.ctename for n in nodes if isinstance(n, ast.CommonTableExpr)}
    return {n.relname for n in nodes
            if isinstance(n, ast.RangeVar) and not (n.schemaname is None and n.relname in ctes)}


def _func_names(node) -> set[str]:
    return {_last(n.funcname).lower() for n in _walk(node) if isinstance(n, ast.FuncCall)}


def _defelems(options) -> dict[str, object]:
    out = {}
    for d in options or ():
        if isinstance(d, ast.DefElem):
            out[d.defname] = d.arg
    return out


def _truthy(arg, default: bool) -> bool:
    if arg is None:
        return True
    if isinstance(arg, ast.String):
        return arg.sval.lower() in ("true", "on", "1", "yes")
    if isinstance(arg, ast.Boolean):
        return bool(arg.boolval)
    if isinstance(arg, ast.Integer):
        return bool(arg.ival)
    return default


def _plpgsql_commits(create_function_sql: str) -> bool:
    """Whether a plpgsql function/procedure/DO body contains COMMIT or ROLLBACK."""
    try:
        tree = pglast.parse_plpgsql(create_function_sql)
    except Exception:  # noqa: BLE001 - the server will report a broken body itself
        return False
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "PLpgSQL_stmt_commit" in item or "PLpgSQL_stmt_rollback" in item:
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _do_as_function(body: str) -> str:
    tag = "lint"
    while f"${tag}$" in body:
        tag += "_"
    return f"CREATE FUNCTION pg_temp.lint_do() RETURNS void LANGUAGE plpgsql AS ${tag}${body}${tag}$"


# Volatile functions a DEFAULT typically calls (pg_proc.provolatile = 'v' in PostgreSQL 15 and
# its contrib modules; checked against a live server). now(), CURRENT_TIMESTAMP,
# statement_timestamp() and transaction_timestamp() are stable: no rewrite.
_VOLATILE = frozenset({
    "random", "random_normal", "setseed", "clock_timestamp", "timeofday", "gen_random_uuid", "uuidv4",
    "uuidv7", "uuid_generate_v1", "uuid_generate_v1mc", "uuid_generate_v4", "gen_random_bytes", "gen_salt",
    "nextval", "currval", "lastval", "setval", "pg_sleep",
})
_SERIAL = frozenset({"serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"})
_ENUM_SET_FUNCS = frozenset({"enum_range", "enum_first", "enum_last"})


# ---------------------------------------------------------------------------------------------
# What the lint knows about the schema (built from the set's up migrations) and the transaction
# ---------------------------------------------------------------------------------------------
@dataclass
class _Deferrable:
    """A foreign key or constraint trigger whose checks can wait until COMMIT."""
    name: str
    table: str                 # where the events queue (referencing table / trigger table)
    events: frozenset[str]     # "insert", "update", "delete"
    columns: frozenset[str] | None  # UPDATE queues an event only if one of these is set (None: any)
    deferrable: bool
    initdeferred: bool


@dataclass
class _Table:
    complete: bool = False   # created by a statement the lint saw, so every column is known
    columns: dict[str, str] = field(default_factory=dict)   # column -> type name
    pk: tuple[str, ...] = ()
    partitioned: bool = False
    deferrables: list[_Deferrable] = field(default_factory=list)


@dataclass
class _Schema:
    tables: dict[str, _Table] = field(default_factory=dict)
    enums: dict[str, set[str]] = field(default_factory=dict)
    notnull_checks: dict[str, tuple[str, str]] = field(default_factory=dict)  # constraint -> (table, col)
    volatile_functions: set[str] = field(default_factory=set)
    committing_procedures: set[str] = field(default_factory=set)
    partitioned_indexes: set[str] = field(default_factory=set)

    def table(self, name: str) -> _Table:
        return self.tables.setdefault(name, _Table())

    def clone(self) -> "_Schema":
        """A copy a down migration may change without touching the ups' model (deepcopy was O(n^2))."""
        return _Schema(
            tables={k: _Table(t.complete, dict(t.columns), t.pk, t.partitioned, list(t.deferrables))
                    for k, t in self.tables.items()},
            enums={k: set(v) for k, v in self.enums.items()},
            notnull_checks=dict(self.notnull_checks),
            volatile_functions=set(self.volatile_functions),
            committing_procedures=set(self.committing_procedures),
            partitioned_indexes=set(self.partitioned_indexes))


@dataclass(frozen=True)
class _Origin:
    file: str
    line: int
    column: int
    migration: Migration | None

    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class _Tx:
    """State that lives until COMMIT: one file in lint_set, the whole release in lint_release."""
    new_enum_values: dict[tuple[str, str], _Origin] = field(default_factory=dict)
    pending: dict[str, _Origin] = field(default_factory=dict)          # table -> first queuing DML
    cursors: dict[str, tuple[_Origin, set[str]]] = field(default_factory=dict)  # cursor -> (DECLARE, tables)
    deferred_all: bool = False
    deferred_names: set[str] = field(default_factory=set)
    local_settings: dict[str, tuple[_Origin, str]] = field(default_factory=dict)  # name -> (origin, shown)
    # (table, constraint) -> (where it was added NOT VALID, the rule a same-file VALIDATE reports)
    not_valid: dict[tuple[str, str], tuple[_Origin, str]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# The walker
# ---------------------------------------------------------------------------------------------
class _FileLint:
    """Walk one file's statements in order, consulting and updating the schema and transaction."""

    def __init__(self, path: str, text: str, migration: Migration | None, direction: str,
                 schema: _Schema, tx: _Tx, scope: str) -> None:
        self.path = path
        self.migration = migration
        self.direction = direction
        self.schema = schema
        self.tx = tx
        self.scope = scope
        self.prep = _prepare(text)
        self.source = _Source(path, self.prep.text)
        self.acks, self.ack_problems = _read_acks(self.prep)
        self.findings: list[Finding] = []
        self.created: set[str] = set()
        self.proven_not_null: set[tuple[str, str]] = set()
        self.here: _Origin | None = None

    # --- reporting ------------------------------------------------------------------------
    def origin(self, index: int) -> _Origin:
        line, col = self.source.position(index)
        return _Origin(self.path, line, col, self.migration)

    def report(self, rule: str, message: str, at: _Origin | None = None, instead: str | None = None) -> None:
        r = _RULES[rule]
        if r.scope != self.scope:
            return
        at = at or self.here
        for ack in self.acks.get(rule, ()):
            ack.used = True
        if self.acks.get(rule):
            return
        self.findings.append(Finding(
            file=self.path, line=at.line, column=at.column, rule=rule, severity=r.severity,
            message=message + self.source.origin_note(at.line), why=r.why, instead=instead or r.instead))

    # --- the file -------------------------------------------------------------------------
    def run(self) -> list[Finding]:
        p = self.prep
        if self.scope == "file":
            for index, problem in self.ack_problems:
                self.report("invalid-lint-ok", problem, self.origin(index))
            for index, command in p.metas:
                shown = command if len(command) <= 40 else command[:37] + "..."
                self.report("psql-meta-command", f"psql meta-command '{shown}'", self.origin(index))
            if p.error:
                message, index = p.error
                self.report("syntax-error", message, self.origin(index))
            elif not p.stmts:
                self.report("empty-migration", f"{self.direction} migration has no SQL statement", self.origin(0))
        if p.error:
            return self.findings
        for stmt in p.stmts:
            self.here = self.origin(stmt.start)
            self.statement(stmt)
        return self.findings

    def unused_acks(self) -> None:
        for rule, acks in self.acks.items():
            if _RULES[rule].scope == "file" and not any(a.used for a in acks):
                for ack in acks:
                    self.report("unused-lint-ok", f"'ransomeye:lint-ok {rule}' silences nothing in this file",
                                self.origin(ack.index))

    def is_new(self, table: str) -> bool:
        return table in self.created

    # --- one statement ----------------------------------------------------------------------
    def statement(self, stmt: _Stmt) -> None:
        node = stmt.node
        self.enum_use(node, stmt)
        handler = getattr(self, "on_" + type(node).__name__, None)
        if handler is not None:
            handler(node, stmt)
        self.set_config_calls(node)

    # enum values: used before the transaction that added them commits
    def enum_use(self, node, stmt: _Stmt) -> None:
        if not self.tx.new_enum_values or isinstance(node, ast.AlterEnumStmt):
            return
        trees = [node] + self.sql_function_bodies(node)
        strings = set().union(*(_const_strings(t) for t in trees))
        types = set().union(*(_type_names(t) for t in trees))
        rels = set().union(*(_relations(t) for t in trees))
        funcs = set().union(*(_func_names(t) for t in trees))
        column_types = {ty for r in rels if r in self.schema.tables for ty in self.schema.tables[r].columns.values()}
        # a table the lint has not seen created (lint_release without ``earlier``) may have a
        # column of the type: count the literal as a use
        unknown_table = any(r not in self.schema.tables or not self.schema.tables[r].complete for r in rels)
        reported: set[str] = set()
        for (enum, value), origin in list(self.tx.new_enum_values.items()):
            literal = value in strings and (enum in types or enum in column_types or unknown_table)
            whole_set = enum in types and bool(funcs & _ENUM_SET_FUNCS)
            if not (literal or whole_set):
                continue
            if literal:
                what = f"uses new value '{value}' of enum type {enum}"
            else:
                what = (f"reads every value of enum type {enum} ({'/'.join(sorted(funcs & _ENUM_SET_FUNCS))}()), "
                        f"new value '{value}' included")
            same_file = origin.file == self.path
            rule = "enum-value-used-same-migration" if same_file else "enum-value-used-later-in-release"
            if rule in reported:
                continue  # one finding per statement is enough
            reported.add(rule)
            if same_file:
                self.report(rule, f"{what}, which line {origin.line} of this migration adds")
            else:
                a, b = origin.migration, self.migration
                self.report(
                    rule, f"{what}, which {origin.where()} adds in the same atomic release",
                    instead=(f"split the release between the two migrations: name a release in releases.toml that "
                             f"ends at {a.version if a else origin.file} (or any migration before "
                             f"{b.version if b else self.path}), so that {os.path.basename(origin.file)} commits "
                             f"before {os.path.basename(self.path)} runs; or apply this upgrade per migration "
                             f"instead of atomically."))

    def sql_function_bodies(self, node) -> list:
        if not isinstance(node, ast.CreateFunctionStmt):
            return []
        opts = _defelems(node.options)
        lang = opts.get("language")
        if not (isinstance(lang, ast.String) and lang.sval.lower() == "sql"):
            return []
        body = opts.get("as")
        trees = []
        for part in body or ():
            if isinstance(part, ast.String):
                try:
                    trees.extend(r.stmt for r in pglast.parse_sql(part.sval))
                except ParseError:
                    pass
        return trees

    # pending trigger events: what the server refuses on a table with deferred checks pending
    def refuse_if_in_use(self, table: str, verb: str) -> None:
        """What CheckTableNotInUse refuses: an open cursor reading the table, pending trigger events."""
        for name, (origin, tables) in list(self.tx.cursors.items()):
            if table not in tables:
                continue
            del self.tx.cursors[name]
            if origin.file == self.path:
                self.report("cursor-left-open",
                            f"{verb} \"{table}\" while cursor \"{name}\" (DECLAREd at line {origin.line}) still "
                            f"reads it; PostgreSQL refuses it")
            else:
                self.report("cursor-left-open-in-release",
                            f"{verb} \"{table}\" while cursor \"{name}\", DECLAREd by {origin.where()} in the same "
                            f"atomic release and never closed, still reads it; PostgreSQL refuses it",
                            instead=f"CLOSE {name} at the end of {os.path.basename(origin.file)}.")
            break
        self.refuse_if_pending(table, verb)

    def refuse_if_pending(self, table: str, verb: str) -> None:
        origin = self.tx.pending.get(table)
        if origin is None:
            return
        del self.tx.pending[table]
        if origin.file == self.path:
            self.report("pending-trigger-events",
                        f"{verb} \"{table}\" after line {origin.line} wrote rows whose deferred constraint checks "
                        f"are still pending; PostgreSQL refuses it")
        else:
            a = origin.migration
            self.report("pending-trigger-events-in-release",
                        f"{verb} \"{table}\" while rows written by {origin.where()} (same atomic release) still have "
                        f"deferred constraint checks pending; PostgreSQL refuses it",
                        instead=(f"end {os.path.basename(origin.file)} with SET CONSTRAINTS ALL IMMEDIATE, or split "
                                 f"the release so that {a.version if a else origin.file} commits before "
                                 f"{os.path.basename(self.path)} runs."))

    def deferred(self, d: _Deferrable) -> bool:
        return d.initdeferred or (d.deferrable and (self.tx.deferred_all or d.name in self.tx.deferred_names))

    def dml(self, table: str, kind: str, set_columns: set[str] | None = None) -> None:
        t = self.schema.tables.get(table)
        if t is None or table in self.tx.pending:
            return
        for d in t.deferrables:
            if kind not in d.events or not self.deferred(d):
                continue
            if kind == "update" and set_columns is not None and d.columns is not None and not (d.columns & set_columns):
                continue
            self.tx.pending[table] = self.here
            return

    # --- schema model updates -----------------------------------------------------------------
    def add_column(self, table: str, col: ast.ColumnDef) -> None:
        t = self.schema.table(table)
        t.columns[col.colname] = _type(col.typeName)
        last_fk: list[_Deferrable] = []
        for c in col.constraints or ():
            if c.contype == ConstrType.CONSTR_PRIMARY:
                t.pk = (col.colname,)
                last_fk = []
            elif c.contype == ConstrType.CONSTR_FOREIGN:
                last_fk = self.add_fk(table, c, (col.colname,))
            elif c.contype in (ConstrType.CONSTR_ATTR_DEFERRABLE, ConstrType.CONSTR_ATTR_DEFERRED):
                # in a column definition, DEFERRABLE / INITIALLY DEFERRED come as separate nodes
                # after the REFERENCES they apply to
                for d in last_fk:
                    d.deferrable = True
                    d.initdeferred = d.initdeferred or c.contype == ConstrType.CONSTR_ATTR_DEFERRED
            elif c.contype not in (ConstrType.CONSTR_ATTR_NOT_DEFERRABLE, ConstrType.CONSTR_ATTR_IMMEDIATE):
                last_fk = []

    def add_fk(self, table: str, c: ast.Constraint, columns: tuple[str, ...] | None = None) -> list[_Deferrable]:
        """Record a foreign key's deferrable checks: INSERT/UPDATE on the referencing table, and the
        NO ACTION checks of DELETE/UPDATE on the referenced one (CASCADE, SET NULL, SET DEFAULT and
        RESTRICT act at once and are never deferred)."""
        cols = columns or tuple(s.sval for s in c.fk_attrs or ())
        name = c.conname or f"{table}_{'_'.join(cols)}_fkey"
        deferrable = bool(c.deferrable or c.initdeferred)
        out = [_Deferrable(name, table, frozenset({"insert", "update"}), frozenset(cols) or None,
                           deferrable, bool(c.initdeferred))]
        self.schema.table(table).deferrables.append(out[0])
        ref = c.pktable.relname if c.pktable is not None else None
        no_action = ("a", "\x00", None)
        events = {e for e, action in (("delete", c.fk_del_action), ("update", c.fk_upd_action)) if action in no_action}
        if ref and events:
            ref_cols = tuple(s.sval for s in c.pk_attrs or ()) or self.schema.table(ref).pk or None
            out.append(_Deferrable(name, ref, frozenset(events), frozenset(ref_cols) if ref_cols else None,
                                   deferrable, bool(c.initdeferred)))
            self.schema.table(ref).deferrables.append(out[1])
        return out

    # --- statement handlers (on_<NodeName>) ------------------------------------------------------
    def on_TransactionStmt(self, node, stmt) -> None:
        words = {
            TransactionStmtKind.TRANS_STMT_BEGIN: "BEGIN", TransactionStmtKind.TRANS_STMT_START: "START TRANSACTION",
            TransactionStmtKind.TRANS_STMT_COMMIT: "COMMIT", TransactionStmtKind.TRANS_STMT_ROLLBACK: "ROLLBACK",
            TransactionStmtKind.TRANS_STMT_SAVEPOINT: "SAVEPOINT",
            TransactionStmtKind.TRANS_STMT_RELEASE: "RELEASE SAVEPOINT",
            TransactionStmtKind.TRANS_STMT_ROLLBACK_TO: "ROLLBACK TO SAVEPOINT",
            TransactionStmtKind.TRANS_STMT_PREPARE: "PREPARE TRANSACTION",
            TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED: "COMMIT PREPARED",
            TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED: "ROLLBACK PREPARED",
        }
        self.report("transaction-control", f"{words.get(node.kind, 'transaction control')} inside a migration")

    def on_VariableSetStmt(self, node, stmt) -> None:
        kind = node.kind
        if kind == VariableSetKind.VAR_SET_MULTI and node.name == "TRANSACTION":
            self.report("transaction-control", "SET TRANSACTION inside a migration (it must precede every query of the "
                                               "transaction, and the runner has already run some)")
            return
        if kind in (VariableSetKind.VAR_RESET, VariableSetKind.VAR_RESET_ALL):
            if kind == VariableSetKind.VAR_RESET_ALL:
                self.tx.local_settings.clear()
            else:
                self.tx.local_settings.pop(node.name, None)
            return
        name = node.name or ""
        if node.is_local:
            if kind == VariableSetKind.VAR_SET_DEFAULT:
                self.tx.local_settings.pop(name, None)
            else:
                self.tx.local_settings[name] = (self.here, f"SET LOCAL {name}")
            return
        shown = "SET SESSION CHARACTERISTICS" if name == "SESSION CHARACTERISTICS" else f"SET {name}"
        self.report("session-setting", f"{shown} without LOCAL")

    def set_config_calls(self, node) -> None:
        for n in _walk(node):
            if isinstance(n, ast.FuncCall) and _last(n.funcname).lower() == "set_config" and len(n.args or ()) == 3:
                name_arg, _, local_arg = n.args
                literal = isinstance(name_arg, ast.A_Const) and isinstance(name_arg.val, ast.String)
                name = name_arg.val.sval if literal else "?"
                is_local = isinstance(local_arg, ast.A_Const) and _truthy(local_arg.val, True)
                if is_local:
                    self.tx.local_settings[name] = (self.here, f"set_config('{name}', ..., true)")
                else:
                    self.report("session-setting", f"set_config('{name}', ..., false) lasts beyond this migration")

    def on_ConstraintsSetStmt(self, node, stmt) -> None:
        names = {rv.relname for rv in node.constraints or ()}
        if node.deferred:
            if names:
                self.tx.deferred_names |= names
            else:
                self.tx.deferred_all = True
            shown = "SET CONSTRAINTS " + (", ".join(sorted(names)) if names else "ALL") + " DEFERRED"
            self.tx.local_settings["<constraints>"] = (self.here, shown)
        else:
            # IMMEDIATE runs the pending checks now
            self.tx.pending.clear()
            if names:
                self.tx.deferred_names -= names
            else:
                self.tx.deferred_all = False
                self.tx.deferred_names.clear()
            if not self.tx.deferred_all and not self.tx.deferred_names:
                self.tx.local_settings.pop("<constraints>", None)

    def on_DoStmt(self, node, stmt) -> None:
        opts = _defelems(node.args)
        lang = opts.get("language")
        if isinstance(lang, ast.String) and lang.sval.lower() != "plpgsql":
            return
        body = opts.get("as")
        if isinstance(body, ast.String) and _plpgsql_commits(_do_as_function(body.sval)):
            self.report("transaction-control",
                        "DO block with COMMIT or ROLLBACK inside a migration (PostgreSQL refuses it in a "
                        "transaction block: 'invalid transaction termination')")

    def on_CreateFunctionStmt(self, node, stmt) -> None:
        name = _last(node.funcname)
        opts = _defelems(node.options)
        vol = opts.get("volatility")
        if node.is_procedure:
            lang = opts.get("language")
            if isinstance(lang, ast.String) and lang.sval.lower() == "plpgsql":
                if _plpgsql_commits(self.prep.text[stmt.start:stmt.end]):
                    self.schema.committing_procedures.add(name)
            return
        if vol is None or (isinstance(vol, ast.String) and vol.sval.lower() == "volatile"):
            self.schema.volatile_functions.add(name.lower())
        else:
            self.schema.volatile_functions.discard(name.lower())

    def on_CallStmt(self, node, stmt) -> None:
        name = _last(node.funccall.funcname)
        if name in self.schema.committing_procedures:
            self.report("transaction-control",
                        f"CALL {name}(): the procedure COMMITs or ROLLBACKs, which PostgreSQL refuses inside a "
                        f"transaction block ('invalid transaction termination')")

    def on_DeclareCursorStmt(self, node, stmt) -> None:
        self.tx.cursors[node.portalname] = (self.here, _relations(node.query))

    def on_ClosePortalStmt(self, node, stmt) -> None:
        if node.portalname is None:  # CLOSE ALL
            self.tx.cursors.clear()
        else:
            self.tx.cursors.pop(node.portalname, None)

    def on_CopyStmt(self, node, stmt) -> None:
        if node.filename is None and not node.is_program:
            self.report("copy-stdio", "COPY ... FROM STDIN" if node.is_from else "COPY ... TO STDOUT")
        elif node.is_from and node.relation is not None:
            self.dml(node.relation.relname, "insert")

    # statements the server refuses in a transaction block
    def no_tx(self, what: str) -> None:
        self.report("cannot-run-in-transaction", f"{what} cannot run inside a transaction block")

    def on_VacuumStmt(self, node, stmt) -> None:
        if node.is_vacuumcmd:
            self.no_tx("VACUUM")

    def on_CreatedbStmt(self, node, stmt) -> None:
        self.no_tx("CREATE DATABASE")

    def on_DropdbStmt(self, node, stmt) -> None:
        self.no_tx("DROP DATABASE")

    def on_CreateTableSpaceStmt(self, node, stmt) -> None:
        self.no_tx("CREATE TABLESPACE")

    def on_DropTableSpaceStmt(self, node, stmt) -> None:
        self.no_tx("DROP TABLESPACE")

    def on_AlterSystemStmt(self, node, stmt) -> None:
        self.no_tx("ALTER SYSTEM")

    def on_AlterDatabaseStmt(self, node, stmt) -> None:
        if "tablespace" in _defelems(node.options):
            self.no_tx("ALTER DATABASE ... SET TABLESPACE")

    def on_DiscardStmt(self, node, stmt) -> None:
        if node.target == DiscardMode.DISCARD_ALL:
            self.no_tx("DISCARD ALL")

    def on_CreateSubscriptionStmt(self, node, stmt) -> None:
        opts = _defelems(node.options)
        connect = _truthy(opts["connect"], True) if "connect" in opts else True
        create_slot = _truthy(opts["create_slot"], True) if "create_slot" in opts else connect
        if create_slot:
            self.no_tx("CREATE SUBSCRIPTION ... WITH (create_slot = true)")

    def on_DropSubscriptionStmt(self, node, stmt) -> None:
        self.no_tx("DROP SUBSCRIPTION of a subscription with a replication slot")

    def on_AlterSubscriptionStmt(self, node, stmt) -> None:
        k = node.kind
        if k == AlterSubscriptionType.ALTER_SUBSCRIPTION_REFRESH:
            self.no_tx("ALTER SUBSCRIPTION ... REFRESH PUBLICATION")
        elif k in (AlterSubscriptionType.ALTER_SUBSCRIPTION_SET_PUBLICATION,
                   AlterSubscriptionType.ALTER_SUBSCRIPTION_ADD_PUBLICATION,
                   AlterSubscriptionType.ALTER_SUBSCRIPTION_DROP_PUBLICATION):
            opts = _defelems(node.options)
            if _truthy(opts["refresh"], True) if "refresh" in opts else True:
                self.no_tx("ALTER SUBSCRIPTION ... PUBLICATION with refresh")

    def on_ClusterStmt(self, node, stmt) -> None:
        if node.relation is None:
            self.no_tx("CLUSTER without a table name")
            return
        table = node.relation.relname
        if table in self.schema.tables and self.schema.tables[table].partitioned:
            self.no_tx(f"CLUSTER of partitioned table \"{table}\"")
        self.refuse_if_in_use(table, "CLUSTER")

    def on_ReindexStmt(self, node, stmt) -> None:
        params = {d.defname for d in node.params or () if isinstance(d, ast.DefElem)}
        kinds = {ReindexObjectType.REINDEX_OBJECT_SCHEMA: "REINDEX SCHEMA",
                 ReindexObjectType.REINDEX_OBJECT_SYSTEM: "REINDEX SYSTEM",
                 ReindexObjectType.REINDEX_OBJECT_DATABASE: "REINDEX DATABASE"}
        if "concurrently" in params:
            self.report("concurrently-in-transaction", "REINDEX ... CONCURRENTLY cannot run inside a transaction block")
        elif node.kind in kinds:
            self.no_tx(kinds[node.kind])
        elif node.relation is not None:
            name = node.relation.relname
            partitioned = name in self.schema.tables and self.schema.tables[name].partitioned
            if node.kind == ReindexObjectType.REINDEX_OBJECT_TABLE and partitioned:
                self.no_tx(f"REINDEX TABLE of partitioned table \"{name}\"")
            elif node.kind == ReindexObjectType.REINDEX_OBJECT_INDEX and name in self.schema.partitioned_indexes:
                self.no_tx(f"REINDEX INDEX of partitioned index \"{name}\"")

    # tables
    def on_CreateStmt(self, node, stmt) -> None:
        name = node.relation.relname
        if node.if_not_exists and name in self.schema.tables:
            return  # a no-op on a table the set already created
        self.created.add(name)
        complete = not node.inhRelations and node.ofTypename is None and not any(
            isinstance(elt, ast.TableLikeClause) for elt in node.tableElts or ())
        self.schema.tables[name] = _Table(complete=complete, partitioned=node.partspec is not None)
        for elt in node.tableElts or ():
            if isinstance(elt, ast.ColumnDef):
                self.add_column(name, elt)
        for elt in node.tableElts or ():
            if isinstance(elt, ast.Constraint):
                self.table_constraint(name, elt, new_table=True)

    def on_CreateTableAsStmt(self, node, stmt) -> None:
        if node.into is not None and node.into.rel is not None:
            self.created.add(node.into.rel.relname)
            self.schema.tables[node.into.rel.relname] = _Table()

    def on_SelectStmt(self, node, stmt) -> None:
        if node.intoClause is not None and node.intoClause.rel is not None:
            self.created.add(node.intoClause.rel.relname)
            self.schema.tables[node.intoClause.rel.relname] = _Table()

    def on_CreateEnumStmt(self, node, stmt) -> None:
        self.schema.enums[_last(node.typeName)] = {v.sval for v in node.vals or ()}

    def on_AlterEnumStmt(self, node, stmt) -> None:
        if node.oldVal:  # RENAME VALUE: a value added in this transaction stays unsafe under its new name
            enum = _last(node.typeName)
            values = self.schema.enums.get(enum)
            if values is not None:
                values.discard(node.oldVal)
                values.add(node.newVal)
            added = self.tx.new_enum_values.pop((enum, node.oldVal), None)
            if added is not None:
                self.tx.new_enum_values[(enum, node.newVal)] = added
            return
        enum, value = _last(node.typeName), node.newVal
        known = self.schema.enums.setdefault(enum, set())
        if node.skipIfNewValExists and value in known:
            return
        known.add(value)
        self.tx.new_enum_values.setdefault((enum, value), self.here)

    def on_CreateTrigStmt(self, node, stmt) -> None:
        if not node.isconstraint or node.relation is None:
            return
        events = {name for bit, name in ((4, "insert"), (8, "delete"), (16, "update")) if node.events & bit}
        cols = frozenset(s.sval for s in node.columns or ()) or None
        table = node.relation.relname
        self.schema.table(table).deferrables.append(
            _Deferrable(node.trigname, table, frozenset(events), cols, bool(node.deferrable or node.initdeferred),
                        bool(node.initdeferred)))

    def on_RenameStmt(self, node, stmt) -> None:
        if node.relation is None:
            return
        old = node.relation.relname
        if node.renameType == ObjectType.OBJECT_TABLE and old in self.schema.tables:
            self.schema.tables[node.newname] = self.schema.tables.pop(old)
            if old in self.created:
                self.created.add(node.newname)
        elif node.renameType == ObjectType.OBJECT_COLUMN and old in self.schema.tables:
            cols = self.schema.tables[old].columns
            if node.subname in cols:
                cols[node.newname] = cols.pop(node.subname)

    def on_IndexStmt(self, node, stmt) -> None:
        table = node.relation.relname
        if node.concurrent:
            self.report("concurrently-in-transaction",
                        "CREATE INDEX CONCURRENTLY cannot run inside a transaction block")
            return
        self.refuse_if_in_use(table, "CREATE INDEX on")
        if table in self.schema.tables and self.schema.tables[table].partitioned and node.idxname:
            self.schema.partitioned_indexes.add(node.idxname)
        if not self.is_new(table):
            what = " ".join(w for w in ("CREATE", "UNIQUE" if node.unique else "", "INDEX", node.idxname or "") if w)
            self.report("index-on-existing-table",
                        f"{what} on existing table \"{table}\"")

    def on_DropStmt(self, node, stmt) -> None:
        if node.concurrent:
            self.report("concurrently-in-transaction", "DROP INDEX CONCURRENTLY cannot run inside a transaction block")
            return
        if node.removeType == ObjectType.OBJECT_TYPE:
            for obj in node.objects or ():
                names = obj.names if isinstance(obj, ast.TypeName) else obj
                self.schema.enums.pop(_last(names) if names else "", None)
            return
        if node.removeType != ObjectType.OBJECT_TABLE:
            return
        for obj in node.objects or ():
            table = _last(obj)
            self.refuse_if_in_use(table, "DROP TABLE")
            if self.direction == "up" and not self.is_new(table):
                self.report("drop-table", f"DROP TABLE \"{table}\" in an up migration")
            self.schema.tables.pop(table, None)
            self.created.discard(table)

    def on_TruncateStmt(self, node, stmt) -> None:
        for rv in node.relations or ():
            self.refuse_if_in_use(rv.relname, "TRUNCATE")

    def on_InsertStmt(self, node, stmt) -> None:
        self.dml(node.relation.relname, "insert")

    def on_UpdateStmt(self, node, stmt) -> None:
        self.dml(node.relation.relname, "update", {t.name for t in node.targetList or () if t.name})

    def on_DeleteStmt(self, node, stmt) -> None:
        self.dml(node.relation.relname, "delete")

    def on_MergeStmt(self, node, stmt) -> None:
        kinds = {CmdType.CMD_INSERT: "insert", CmdType.CMD_UPDATE: "update", CmdType.CMD_DELETE: "delete"}
        for clause in node.mergeWhenClauses or ():
            if clause.commandType in kinds:
                self.dml(node.relation.relname, kinds[clause.commandType])

    def on_AlterTableStmt(self, node, stmt) -> None:
        if node.objtype != ObjectType.OBJECT_TABLE or node.relation is None:
            return
        table = node.relation.relname
        self.refuse_if_in_use(table, "ALTER TABLE")
        existing = not self.is_new(table)
        for cmd in node.cmds or ():
            self.alter_table_cmd(table, cmd, existing)

    def alter_table_cmd(self, table: str, cmd: ast.AlterTableCmd, existing: bool) -> None:
        st = cmd.subtype
        t = self.schema.table(table)
        if st == AlterTableType.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
            col = cmd.def_
            if existing:
                self.new_column_on_existing_table(table, col)
            self.add_column(table, col)
        elif st == AlterTableType.AT_DropColumn:
            if existing and self.direction == "up":
                self.report("drop-column", f"DROP COLUMN \"{cmd.name}\" of \"{table}\" in an up migration")
            t.columns.pop(cmd.name, None)
        elif st == AlterTableType.AT_AlterColumnType:
            if existing:
                new_type = _type(cmd.def_.typeName) if isinstance(cmd.def_, ast.ColumnDef) else "?"
                self.report("alter-column-type",
                            f"ALTER COLUMN \"{cmd.name}\" TYPE {new_type} on existing table \"{table}\"")
            if isinstance(cmd.def_, ast.ColumnDef):
                t.columns[cmd.name] = _type(cmd.def_.typeName)
        elif st == AlterTableType.AT_SetNotNull:
            if existing and (table, cmd.name) not in self.proven_not_null:
                self.report("set-not-null", f"SET NOT NULL on column \"{cmd.name}\" of existing table \"{table}\"")
        elif st == AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
            self.table_constraint(table, cmd.def_, new_table=not existing)
        elif st == AlterTableType.AT_ValidateConstraint:
            self.validate_constraint(table, cmd.name)
        elif st == AlterTableType.AT_DetachPartition and getattr(cmd.def_, "concurrent", False):
            self.report("concurrently-in-transaction",
                        "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY cannot run inside a transaction block")

    def new_column_on_existing_table(self, table: str, col: ast.ColumnDef) -> None:
        cons = list(col.constraints or ())
        types = {c.contype for c in cons}
        default = next((c.raw_expr for c in cons if c.contype == ConstrType.CONSTR_DEFAULT), None)
        name = f"\"{col.colname}\" to existing table \"{table}\""
        rewrite = None
        if _type(col.typeName) in _SERIAL:
            rewrite = f"ADD COLUMN {name} as {_type(col.typeName)} (each row draws from a sequence)"
        elif ConstrType.CONSTR_IDENTITY in types:
            rewrite = f"ADD COLUMN {name} as an identity column (each row draws from a sequence)"
        elif any(c.contype == ConstrType.CONSTR_GENERATED and c.generated_kind == "s" for c in cons):
            rewrite = f"ADD COLUMN {name} as a stored generated column (computed for every row)"
        elif default is not None:
            volatile = sorted(f for f in _func_names(default) if f in _VOLATILE or f in self.schema.volatile_functions)
            if volatile:
                rewrite = f"ADD COLUMN {name} with volatile DEFAULT {volatile[0]}()"
        if rewrite:
            self.report("add-column-rewrite", rewrite)
        not_null = bool(col.is_not_null) or bool(types & {ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY})
        filled = bool(types & {ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED}) \
            or _type(col.typeName) in _SERIAL
        if not_null and not filled:
            self.report("not-null-column-without-default",
                        f"ADD COLUMN {name} is NOT NULL without a DEFAULT")
        for c in cons:
            if c.contype == ConstrType.CONSTR_FOREIGN:
                self.report("foreign-key-without-not-valid",
                            f"ADD COLUMN {name} with REFERENCES (validated at once, without NOT VALID)",
                            instead="add the column without REFERENCES, then " + _NOT_VALID_SPLIT + ".")
            elif c.contype == ConstrType.CONSTR_CHECK:
                self.report("check-without-not-valid",
                            f"ADD COLUMN {name} with a CHECK (validated at once, without NOT VALID)",
                            instead="add the column without the CHECK, then " + _NOT_VALID_SPLIT + ".")
            elif c.contype in (ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_UNIQUE):
                key = "PRIMARY KEY" if c.contype == ConstrType.CONSTR_PRIMARY else "UNIQUE"
                self.report("index-on-existing-table", f"ADD COLUMN {name} with {key} builds an index")

    def table_constraint(self, table: str, c: ast.Constraint, new_table: bool) -> None:
        label = f"constraint \"{c.conname}\"" if c.conname else "constraint"
        if c.contype == ConstrType.CONSTR_FOREIGN:
            self.add_fk(table, c)
            if c.skip_validation:
                self.tx.not_valid[(table, c.conname or "")] = (self.here, "foreign-key-without-not-valid")
            elif not new_table:
                self.report("foreign-key-without-not-valid",
                            f"FOREIGN KEY {label} added to existing table \"{table}\" without NOT VALID")
        elif c.contype == ConstrType.CONSTR_CHECK:
            col = self.not_null_check_column(c)
            if col and c.conname:
                self.schema.notnull_checks[c.conname] = (table, col)
            if c.skip_validation:
                self.tx.not_valid[(table, c.conname or "")] = (self.here, "check-without-not-valid")
            else:
                if col:
                    self.proven_not_null.add((table, col))
                if not new_table:
                    self.report("check-without-not-valid",
                                f"CHECK {label} added to existing table \"{table}\" without NOT VALID")
        elif c.contype in (ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_EXCLUSION):
            if c.contype == ConstrType.CONSTR_PRIMARY:
                self.schema.table(table).pk = tuple(s.sval for s in c.keys or ())
            if not new_table and not c.indexname:
                kind = {ConstrType.CONSTR_PRIMARY: "PRIMARY KEY", ConstrType.CONSTR_UNIQUE: "UNIQUE",
                        ConstrType.CONSTR_EXCLUSION: "EXCLUDE"}[c.contype]
                self.report("index-on-existing-table",
                            f"ADD {kind} {label} on existing table \"{table}\" builds a new index",
                            instead="create the unique index CONCURRENTLY outside the runner as an operator step, then "
                                    "ADD CONSTRAINT ... USING INDEX (instant); acknowledge it for a small table.")
        elif c.contype == ConstrType.CONSTR_NOTNULL and not new_table and not c.skip_validation:
            for key in c.keys or ():
                if (table, key.sval) not in self.proven_not_null:
                    self.report("set-not-null", f"NOT NULL {label} on column \"{key.sval}\" of existing table "
                                                f"\"{table}\"")

    @staticmethod
    def not_null_check_column(c: ast.Constraint) -> str | None:
        e = c.raw_expr
        if (isinstance(e, ast.NullTest) and e.nulltesttype == NullTestType.IS_NOT_NULL
                and isinstance(e.arg, ast.ColumnRef) and len(e.arg.fields) == 1
                and isinstance(e.arg.fields[0], ast.String)):
            return e.arg.fields[0].sval
        return None

    def validate_constraint(self, table: str, name: str) -> None:
        proven = self.schema.notnull_checks.get(name)
        if proven and proven[0] == table:
            self.proven_not_null.add(proven)
        added = self.tx.not_valid.pop((table, name), None)
        if added is None:
            return
        origin, rule = added
        if origin.file == self.path:
            if self.is_new(table):
                return
            self.report(rule, f"constraint \"{name}\" is added NOT VALID at line {origin.line} and validated in the "
                              f"same migration: one transaction, so the lock is held during the validation scan",
                        instead="move VALIDATE CONSTRAINT to a later migration.")
        else:
            self.report("not-valid-validated-in-same-release",
                        f"VALIDATE CONSTRAINT \"{name}\" of \"{table}\", which {origin.where()} adds NOT VALID in the "
                        f"same atomic release: the lock of ADD CONSTRAINT is still held during this scan")

    # --- end of a migration in a release ---------------------------------------------------------
    def leaked_settings(self, later: Sequence[Migration]) -> None:
        names = ", ".join(os.path.basename(str(m.up_path)) for m in later[:2]) + (", ..." if len(later) > 2 else "")
        for _, (origin, shown) in sorted(self.tx.local_settings.items(), key=lambda kv: kv[1][0].line):
            if origin.file == self.path:
                self.report("setting-leaks-into-later-migration",
                            f"{shown} is still in force when the later migrations of this atomic release run ({names})",
                            at=origin)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------
def _lint_file(path, text, migration, direction, schema, scope) -> list[Finding]:
    f = _FileLint(str(path), text, migration, direction, schema, _Tx(), scope)
    f.run()
    f.unused_acks()
    return sorted(f.findings, key=lambda x: (x.line, x.column))


def _strict(findings: list[Finding], strict: bool) -> list[Finding]:
    if not strict:
        return findings
    return [Finding(**{**asdict(f), "severity": ERROR}) if f.severity == WARNING else f for f in findings]


def lint_set(mset: MigrationSet, strict: bool = False) -> list[Finding]:
    """Every finding of every migration in ``mset``, in migration order, up before down.

    Each file is linted as its own transaction, the way the runner applies it per migration; the
    schema model that later checks consult grows with each up migration.
    """
    findings: list[Finding] = []
    schema = _Schema()
    for m in mset.migrations:
        down_path = getattr(m, "down_path", None)
        down_sql = getattr(m, "down_sql", None)
        findings += _lint_file(m.up_path, m.up_sql or "", m, "up", schema, "file")
        if down_path is None or down_sql is None:
            r = _RULES["missing-down"]
            findings.append(Finding(str(m.up_path), 1, 1, "missing-down", r.severity,
                                    f"migration {m.version} has no down file", r.why, r.instead))
            continue
        findings += _lint_file(down_path, down_sql, m, "down", schema.clone(), "file")
    return _strict(findings, strict)


def lint_release(migrations: Sequence[Migration], *, earlier: Sequence[Migration] = (),
                 strict: bool = False) -> list[Finding]:
    """What breaks only when ``migrations`` run, in order, in ONE transaction (atomic release mode).

    Reports a problem only across two different migrations of the list; a problem inside one
    migration is ``lint_set``'s. ``earlier`` -- the migrations already applied before the
    release -- lets the lint know the tables they created (enum columns, deferred constraints).
    """
    schema = _Schema()
    for m in earlier:
        _FileLint(str(m.up_path), m.up_sql or "", m, "up", schema, _Tx(), "release").run()
    tx = _Tx()
    findings: list[Finding] = []
    for i, m in enumerate(migrations):
        tx.local_settings.clear()
        f = _FileLint(str(m.up_path), m.up_sql or "", m, "up", schema, tx, "release")
        f.run()
        if i + 1 < len(migrations):
            f.leaked_settings(migrations[i + 1:])
        findings += sorted(f.findings, key=lambda x: (x.line, x.column))
    return _strict(findings, strict)
