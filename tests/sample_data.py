"""Realistic, deterministic data for the v1.0.0 schema: every table, every constraint respected.

``load(conn, machines, events_per_machine, seed)`` fills the 13 tables of the v1.0.0 bundle with
set-based INSERT … SELECT over generate_series (no per-row round trips), so a few million
raw_events load in minutes. Every value is a pure function of (seed, row key): a hash, never
``random()`` in evaluation order, so the same seed gives the same rows whatever plan the server
picks, and rows can point at each other by computing the other row's key (a file event names the
process event that opened its 8-event block). ``setseed`` is set as well, for anything added later
that uses ``random()``.

The shape, per machine (M machines, E events each):
- one live agent; about 10 % of machines also keep a revoked older agent (reinstall history);
- E raw_events over the 30 days before 2025-02-01, skewed by type (every 8th is a process start;
  file modify/read, network and process exit dominate, volume shadow copy is rare), each with a
  JSON payload of a few hundred bytes and its real SHA-256; process_events and file_events are
  parsed out of those payloads, as Core's normaliser would;
- D = max(3, E // 100) detections (about a third unresolved), grouped three at a time into
  max(1, D // 3) incidents (open, investigating, contained, resolved, false positive), with notes;
- response actions for contained/resolved incidents and for some detections, in every state;
- a default policy on every machine plus one per OS family, and a tier-0 policy on servers.

``row_fingerprint(conn, table)`` is an md5 over a table's rows in primary-key order, reading only
the columns of the v1.0.0 schema, so a column a later release adds does not change it.
"""
from __future__ import annotations

from typing import Callable

import psycopg
from psycopg import sql

# The v1.0.0 bundle's tables, parents first, with their columns and primary keys as the bundle
# defines them (tests/test_sample_data.py checks these against a database at release 1.0.0).
V1_COLUMNS: dict[str, tuple[str, ...]] = {
    "machines": ("machine_id", "hostname", "fqdn", "os_family", "os_version", "ip_address", "first_seen",
                 "last_seen", "status", "created_at", "updated_at"),
    "agents": ("agent_id", "machine_id", "agent_version", "status", "enrolled_at", "last_heartbeat_at",
               "revoked_at", "created_at", "updated_at"),
    "raw_events": ("event_id", "machine_id", "agent_id", "event_type", "observed_at", "received_at",
                   "sequence_no", "schema_version", "payload", "payload_sha256"),
    "process_events": ("process_event_id", "raw_event_id", "machine_id", "observed_at", "action", "pid", "ppid",
                       "image_path", "command_line", "parent_image_path", "user_name", "user_sid",
                       "integrity_level", "sha256", "sha1", "md5", "is_signed", "signer", "exit_code"),
    "file_events": ("file_event_id", "raw_event_id", "machine_id", "process_event_id", "observed_at", "operation",
                    "pid", "file_path", "previous_path", "file_extension", "entropy", "bytes_written",
                    "file_size_bytes", "sha256_before", "sha256_after"),
    "detection_rules": ("rule_id", "name", "description", "version", "default_severity", "mitre_techniques",
                        "definition", "enabled", "created_at", "updated_at"),
    "detections": ("detection_id", "machine_id", "rule_id", "rule_version", "raw_event_id", "severity",
                   "confidence", "status", "title", "evidence", "detected_at", "resolved_at", "resolved_by",
                   "created_at", "updated_at"),
    "incidents": ("incident_id", "title", "description", "severity", "status", "primary_machine_id",
                  "assigned_to", "opened_at", "contained_at", "closed_at", "created_at", "updated_at"),
    "incident_detections": ("incident_id", "detection_id", "linked_at", "linked_by"),
    "incident_notes": ("note_id", "incident_id", "author", "body", "created_at"),
    "policies": ("policy_id", "name", "description", "version", "mode", "rules", "enabled", "created_by",
                 "created_at", "updated_at"),
    "policy_assignments": ("policy_id", "machine_id", "priority", "assigned_by", "assigned_at"),
    "response_actions": ("action_id", "incident_id", "detection_id", "machine_id", "policy_id", "action_type",
                         "status", "parameters", "requested_by", "requested_at", "approved_by", "approved_at",
                         "dispatched_at", "completed_at", "result", "error_message"),
}
V1_PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "machines": ("machine_id",), "agents": ("agent_id",), "raw_events": ("event_id",),
    "process_events": ("process_event_id",), "file_events": ("file_event_id",),
    "detection_rules": ("rule_id",), "detections": ("detection_id",), "incidents": ("incident_id",),
    "incident_detections": ("incident_id", "detection_id"), "incident_notes": ("note_id",),
    "policies": ("policy_id",), "policy_assignments": ("policy_id", "machine_id"),
    "response_actions": ("action_id",),
}
TABLES: tuple[str, ...] = tuple(V1_COLUMNS)

# Every timestamp is relative to this instant: no now(), so a seed always gives the same rows.
T0 = "2025-02-01 00:00:00+00"

Progress = Callable[[str], None]


def _helpers(seed: int) -> str:
    """Session-local (pg_temp) SQL functions, inlined by the planner. Nothing outlives the session."""
    s = int(seed)
    return f"""
CREATE FUNCTION pg_temp.u(k bigint, salt int) RETURNS float8 LANGUAGE sql STABLE AS
  $$ SELECT (hashint8extended(k, {s}::bigint * 1000003 + salt) & 2147483647)::float8 / 2147483648.0 $$;
CREATE FUNCTION pg_temp.ut(k text, salt int) RETURNS float8 LANGUAGE sql STABLE AS
  $$ SELECT (hashtextextended(k, {s}::bigint * 1000003 + salt) & 2147483647)::float8 / 2147483648.0 $$;
CREATE FUNCTION pg_temp.uid(kind text, k text) RETURNS uuid LANGUAGE sql STABLE AS
  $$ SELECT md5('{s}:' || kind || ':' || k)::uuid $$;
CREATE FUNCTION pg_temp.hex64(k text) RETURNS text LANGUAGE sql STABLE AS
  $$ SELECT md5('{s}:a:' || k) || md5('{s}:b:' || k) $$;
CREATE FUNCTION pg_temp.pick(a text[], r float8) RETURNS text LANGUAGE sql STABLE AS
  $$ SELECT a[1 + floor(r * array_length(a, 1))::int] $$;
CREATE FUNCTION pg_temp.mid(m int) RETURNS text LANGUAGE sql STABLE AS
  $$ SELECT upper(md5('{s}:machine:' || m)::uuid::text) $$;
CREATE FUNCTION pg_temp.aid(m int) RETURNS uuid LANGUAGE sql STABLE AS
  $$ SELECT md5('{s}:agent:' || m)::uuid $$;
CREATE FUNCTION pg_temp.os(m int) RETURNS os_family LANGUAGE sql STABLE AS
  $$ SELECT CASE WHEN pg_temp.u(m, 11) < 0.70 THEN 'windows' WHEN pg_temp.u(m, 11) < 0.90 THEN 'linux'
                 WHEN pg_temp.u(m, 11) < 0.98 THEN 'macos' ELSE 'other' END::os_family $$;
CREATE FUNCTION pg_temp.server(m int) RETURNS boolean LANGUAGE sql STABLE AS
  $$ SELECT pg_temp.u(m, 12) < CASE pg_temp.os(m) WHEN 'linux' THEN 0.8 WHEN 'windows' THEN 0.15 ELSE 0.0 END $$;
CREATE FUNCTION pg_temp.host(m int) RETURNS text LANGUAGE sql STABLE AS
  $$ SELECT CASE pg_temp.os(m)
              WHEN 'windows' THEN CASE WHEN pg_temp.server(m) THEN 'SRV-' ELSE 'WS-' END || lpad(m::text, 5, '0')
              WHEN 'linux' THEN CASE WHEN pg_temp.server(m) THEN 'lnx-app-' ELSE 'lnx-dev-' END || lpad(m::text, 5, '0')
              WHEN 'macos' THEN 'mbp-' || lpad(m::text, 5, '0')
              ELSE 'appliance-' || lpad(m::text, 5, '0') END $$;
CREATE FUNCTION pg_temp.infected(m int) RETURNS boolean LANGUAGE sql STABLE AS
  $$ SELECT pg_temp.u(m, 13) < 0.03 $$;
CREATE FUNCTION pg_temp.first_seen(m int) RETURNS timestamptz LANGUAGE sql STABLE AS
  $$ SELECT timestamptz '{T0}' - interval '400 days' + pg_temp.u(m, 14) * interval '300 days' $$;
"""


def _ndet(events_per_machine: int) -> int:
    return max(3, events_per_machine // 100)


def _statements(machines: int, events_per_machine: int) -> list[tuple[str, str]]:
    """(table, INSERT … SELECT) in foreign-key order. Sizes are integers, formatted in."""
    M, E = int(machines), int(events_per_machine)
    D = _ndet(E)
    INC = max(1, D // 3)
    return [
        ("detection_rules", f"""
INSERT INTO detection_rules (rule_id, name, description, version, default_severity, mitre_techniques,
                             definition, enabled, created_at, updated_at)
SELECT r.rule_id, r.name, r.name || ': ' || r.descr, r.version, r.sev::severity_level, r.mitre::text[],
       jsonb_build_object('engine', 'sigma-like', 'window_s', 60 * r.n, 'threshold', 3 + r.n % 7,
                          'match', jsonb_build_object('event_type', r.etype, 'field', r.field)),
       r.n % 11 <> 0,
       timestamptz '{T0}' - interval '500 days' + r.n * interval '3 days',
       timestamptz '{T0}' - interval '500 days' + r.n * interval '3 days' + (r.version - 1) * interval '20 days'
  FROM (VALUES
    (1,  'RE-FILE-0001', 'Mass file encryption',            'high-entropy rewrites of many user files', 3, 'critical', '{{T1486}}', 'file_modify', 'entropy'),
    (2,  'RE-FILE-0002', 'Ransom note dropped',              'known ransom-note names written in many folders', 2, 'critical', '{{T1486}}', 'file_create', 'file_path'),
    (3,  'RE-FILE-0003', 'Mass rename to unknown extension', 'burst of renames to one new extension', 2, 'high', '{{T1486}}', 'file_rename', 'file_extension'),
    (4,  'RE-FILE-0004', 'Mass deletion of user files',      'burst of deletes in document folders', 1, 'high', '{{T1485}}', 'file_delete', 'file_path'),
    (5,  'RE-VSS-0001',  'Shadow copies deleted',            'vssadmin/wmic deleting volume shadow copies', 4, 'critical', '{{T1490}}', 'volume_shadow_copy', 'command_line'),
    (6,  'RE-PROC-0001', 'Office spawning a shell',          'winword/excel starting cmd or powershell', 2, 'high', '{{T1204.002,T1059.001}}', 'process_start', 'parent_image_path'),
    (7,  'RE-PROC-0002', 'Encoded PowerShell',               'powershell started with -EncodedCommand', 3, 'medium', '{{T1059.001,T1027}}', 'process_start', 'command_line'),
    (8,  'RE-PROC-0003', 'Credential dumping tool',          'lsass access by an unsigned process', 1, 'critical', '{{T1003.001}}', 'process_start', 'image_path'),
    (9,  'RE-PROC-0004', 'Process injection',                'remote thread creation into another process', 1, 'high', '{{T1055}}', 'process_start', 'action'),
    (10, 'RE-PROC-0005', 'Unsigned binary in temp folder',   'execution from %TEMP% of an unsigned image', 5, 'low', '{{T1204}}', 'process_start', 'is_signed'),
    (11, 'RE-PROC-0006', 'Security tool terminated',         'a process terminated the EDR or AV service', 2, 'high', '{{T1562.001}}', 'process_exit', 'image_path'),
    (12, 'RE-SVC-0001',  'Service created for persistence',  'new auto-start service from a user folder', 1, 'medium', '{{T1543.003}}', 'service_change', 'service'),
    (13, 'RE-REG-0001',  'Run key modified',                 'autostart registry value added', 2, 'low', '{{T1547.001}}', 'registry_change', 'key'),
    (14, 'RE-NET-0001',  'Beaconing to rare domain',         'periodic outbound connections to a rare host', 3, 'medium', '{{T1071.001}}', 'network_connection', 'dst'),
    (15, 'RE-NET-0002',  'SMB lateral movement',             'admin share writes to many hosts', 1, 'high', '{{T1021.002}}', 'network_connection', 'dport'),
    (16, 'RE-AGT-0001',  'Agent tamper attempt',             'agent service stop or file tamper detected', 1, 'high', '{{T1562.001}}', 'agent_status', 'health'),
    (17, 'RE-AGT-0002',  'Agent silent',                     'no heartbeat for longer than the policy allows', 1, 'informational', '{{}}', 'agent_status', 'heartbeat'),
    (18, 'RE-FILE-0005', 'Backup files touched',             'writes to backup catalogues and archives', 1, 'medium', '{{T1490}}', 'file_modify', 'file_extension'),
    (19, 'RE-PROC-0007', 'Living-off-the-land download',     'certutil/bitsadmin fetching from the internet', 2, 'medium', '{{T1105}}', 'process_start', 'command_line'),
    (20, 'RE-PROC-0008', 'Discovery burst',                  'many discovery commands within a minute', 1, 'low', '{{T1082,T1083}}', 'process_start', 'command_line'),
    (21, 'RE-FILE-0006', 'Canary file modified',             'a planted canary file was changed', 1, 'critical', '{{T1486}}', 'file_modify', 'file_path'),
    (22, 'RE-PROC-0009', 'Scheduled task created',           'schtasks /create from a script host', 1, 'low', '{{T1053.005}}', 'process_start', 'command_line')
  ) AS r(n, rule_id, name, descr, version, sev, mitre, etype, field)"""),
        ("policies", f"""
INSERT INTO policies (policy_id, name, description, version, mode, rules, enabled, created_by, created_at, updated_at)
SELECT pg_temp.uid('policy', p.n::text), p.name, p.descr, p.version, p.mode::policy_mode,
       jsonb_build_object('isolate_on', p.isolate_on, 'kill_on', 'high', 'quarantine', p.mode <> 'monitor',
                          'exclusions', jsonb_build_array('C:\\Program Files\\Backup\\*', '/opt/backup/*'),
                          'heartbeat_timeout_s', 900),
       p.n <> 7, 'admin',
       timestamptz '{T0}' - interval '450 days' + p.n * interval '1 day',
       timestamptz '{T0}' - interval '450 days' + p.n * interval '1 day' + (p.version - 1) * interval '30 days'
  FROM (VALUES
    (1, 'Default - monitor',          'every enrolled machine',                 3, 'monitor',   'critical'),
    (2, 'Windows workstations',       'automatic containment on workstations',  5, 'automatic', 'high'),
    (3, 'Windows servers',            'analyst approval before any action',     4, 'approval',  'critical'),
    (4, 'Linux servers',              'approval; no isolation of app servers',  2, 'approval',  'critical'),
    (5, 'macOS fleet',                'automatic containment on laptops',       1, 'automatic', 'high'),
    (6, 'Tier 0 - domain controllers', 'never isolate automatically',           2, 'approval',  'none'),
    (7, 'Pilot - aggressive',         'retired pilot policy',                   1, 'automatic', 'medium')
  ) AS p(n, name, descr, version, mode, isolate_on)"""),
        ("machines", f"""
INSERT INTO machines (machine_id, hostname, fqdn, os_family, os_version, ip_address, first_seen, last_seen,
                      status, created_at, updated_at)
SELECT pg_temp.mid(m), pg_temp.host(m),
       CASE WHEN pg_temp.u(m, 15) < 0.95 THEN lower(pg_temp.host(m)) || '.corp.example.com' END,
       pg_temp.os(m),
       CASE pg_temp.os(m)
         WHEN 'windows' THEN CASE WHEN pg_temp.server(m) THEN pg_temp.pick('{{Windows Server 2019 (17763),Windows Server 2022 (20348),Windows Server 2016 (14393)}}', pg_temp.u(m, 16))
                                  ELSE pg_temp.pick('{{Windows 10 22H2 (19045),Windows 11 23H2 (22631),Windows 11 22H2 (22621),Windows 10 21H2 (19044)}}', pg_temp.u(m, 16)) END
         WHEN 'linux' THEN pg_temp.pick('{{Ubuntu 22.04.4 LTS,RHEL 8.9,RHEL 9.3,Debian 12.5,Ubuntu 20.04.6 LTS}}', pg_temp.u(m, 16))
         WHEN 'macos' THEN pg_temp.pick('{{macOS 14.3 Sonoma,macOS 13.6 Ventura}}', pg_temp.u(m, 16))
         ELSE 'FortiOS 7.2' END,
       ('10.' || (16 + m / 65536) || '.' || (m / 256) % 256 || '.' || m % 256)::inet,
       pg_temp.first_seen(m),
       CASE WHEN st.status IN ('active', 'isolated') THEN timestamptz '{T0}' - pg_temp.u(m, 17) * interval '2 hours'
            ELSE timestamptz '{T0}' - interval '31 days' - pg_temp.u(m, 17) * interval '60 days' END,
       st.status, pg_temp.first_seen(m),
       CASE WHEN st.status IN ('active', 'isolated') THEN timestamptz '{T0}' - pg_temp.u(m, 17) * interval '2 hours'
            ELSE timestamptz '{T0}' - interval '31 days' - pg_temp.u(m, 17) * interval '60 days' END
  FROM generate_series(1, {M}) AS m
 CROSS JOIN LATERAL (SELECT CASE WHEN pg_temp.infected(m) AND pg_temp.u(m, 18) < 0.5 THEN 'isolated'
                                 WHEN pg_temp.u(m, 18) < 0.86 THEN 'active'
                                 WHEN pg_temp.u(m, 18) < 0.95 THEN 'inactive'
                                 WHEN pg_temp.u(m, 18) < 0.98 THEN 'isolated'
                                 ELSE 'decommissioned' END::machine_status AS status) st"""),
        ("agents", f"""
INSERT INTO agents (agent_id, machine_id, agent_version, status, enrolled_at, last_heartbeat_at, revoked_at,
                    created_at, updated_at)
SELECT a.agent_id, pg_temp.mid(m), a.version, a.status::agent_status, a.enrolled_at, a.heartbeat, a.revoked_at,
       a.enrolled_at, greatest(a.enrolled_at, a.heartbeat, a.revoked_at)
  FROM generate_series(1, {M}) AS m
 CROSS JOIN LATERAL (
       -- the live agent
       SELECT pg_temp.aid(m) AS agent_id,
              pg_temp.pick('{{4.2.1,4.2.1,4.2.1,4.2.0,4.1.7,4.1.7,3.9.12}}', pg_temp.u(m, 21)) AS version,
              CASE WHEN pg_temp.u(m, 22) < 0.85 THEN 'online' WHEN pg_temp.u(m, 22) < 0.93 THEN 'offline'
                   WHEN pg_temp.u(m, 22) < 0.97 THEN 'degraded' ELSE 'registered' END AS status,
              pg_temp.first_seen(m) + interval '1 hour' AS enrolled_at,
              CASE WHEN pg_temp.u(m, 22) >= 0.97 THEN NULL
                   ELSE timestamptz '{T0}' - interval '1 minute' - pg_temp.u(m, 23) * interval '2 hours' END AS heartbeat,
              NULL::timestamptz AS revoked_at
       UNION ALL
       -- a reinstall leaves the old agent revoked (about 10 % of machines)
       SELECT pg_temp.uid('agent-old', m::text), '3.8.4', 'revoked',
              pg_temp.first_seen(m), pg_temp.first_seen(m) + interval '50 minutes',
              pg_temp.first_seen(m) + interval '55 minutes'
        WHERE pg_temp.u(m, 24) < 0.10) a"""),
        ("raw_events", f"""
INSERT INTO raw_events (event_id, machine_id, agent_id, event_type, observed_at, received_at, sequence_no,
                        schema_version, payload, payload_sha256)
SELECT x.event_id, x.machine_id, x.agent_id, x.etype, x.observed_at, x.received_at, x.e,
       CASE WHEN x.e % 97 = 0 THEN 2 ELSE 1 END, x.payload,
       encode(sha256(convert_to(x.payload::text, 'UTF8')), 'hex')
  FROM (
    SELECT pg_temp.uid('re', pg_temp.mid(s.m) || ':' || s.e) AS event_id, pg_temp.mid(s.m) AS machine_id,
           pg_temp.aid(s.m) AS agent_id, t.etype, o.observed_at,
           o.observed_at + (0.05 + 4 * pg_temp.u(s.i, 3)) * interval '1 second' AS received_at, s.e,
           jsonb_build_object(
               'schema', 1, 'seq', s.e, 'host', pg_temp.host(s.m), 'event', t.etype::text,
               'agent', jsonb_build_object('id', pg_temp.aid(s.m), 'version', '4.2.1'),
               'user', jsonb_build_object(
                   'name', CASE WHEN pg_temp.os(s.m) = 'windows' THEN 'CORP\\u' ELSE 'u' END || lpad(((s.m * 7 + s.e % 3) % 4000)::text, 4, '0'),
                   'sid', 'S-1-5-21-3623811015-3361044348-30300820-' || (1000 + (s.m * 7 + s.e % 3) % 4000)))
           || CASE
                WHEN t.etype IN ('process_start', 'process_exit') THEN jsonb_build_object('process', jsonb_build_object(
                    'action', CASE WHEN t.etype = 'process_exit' THEN 'exit' WHEN pg_temp.u(s.i, 4) < 0.005 THEN 'inject'
                                   WHEN pg_temp.u(s.i, 4) < 0.015 THEN 'terminate' ELSE 'start' END,
                    'pid', 4 * (1 + floor(pg_temp.u(s.i, 5) * 16000)::int),
                    'ppid', 4 * (1 + floor(pg_temp.u(s.i, 6) * 2000)::int),
                    'image', img.image, 'cmdline', img.image || ' ' || pg_temp.pick('{{-k netsvcs,/c echo ok,--type=renderer,-NoProfile -File update.ps1,/quiet,-Embedding}}', pg_temp.u(s.i, 7)),
                    'parent_image', img.parent,
                    'integrity', pg_temp.pick('{{Medium,Medium,High,System,Low}}', pg_temp.u(s.i, 8)),
                    'signed', pg_temp.u(s.i, 9) < 0.92,
                    'signer', CASE WHEN pg_temp.u(s.i, 9) >= 0.92 THEN NULL
                                   WHEN pg_temp.os(s.m) = 'windows' THEN 'Microsoft Windows'
                                   WHEN pg_temp.os(s.m) = 'macos' THEN 'Apple Inc.' ELSE 'Debian Archive Signing Key' END,
                    'hashes', jsonb_build_object('sha256', pg_temp.hex64(img.image), 'sha1', left(pg_temp.hex64('sha1' || img.image), 40),
                                                 'md5', md5(img.image)),
                    'exit_code', CASE WHEN t.etype = 'process_exit' THEN CASE WHEN pg_temp.u(s.i, 10) < 0.9 THEN 0 ELSE 1 END END))
                WHEN t.etype::text LIKE 'file\\_%' THEN jsonb_build_object(
                    'process', jsonb_build_object('pid', 4 * (1 + floor(pg_temp.u(s.i, 5) * 16000)::int), 'image', img.image),
                    'file', jsonb_strip_nulls(jsonb_build_object(
                        'op', f.op, 'path', f.path || CASE WHEN f.op = 'encrypt' THEN '.locked' ELSE '' END,
                        'previous_path', CASE WHEN f.op = 'rename' THEN f.path END,
                        'ext', CASE WHEN f.op = 'encrypt' THEN '.locked' ELSE f.ext END,
                        'entropy', CASE f.op WHEN 'encrypt' THEN round((7.9 + 0.099 * pg_temp.u(s.i, 30))::numeric, 4)
                                             WHEN 'modify' THEN round((2 + 5.4 * pg_temp.u(s.i, 30))::numeric, 4)
                                             WHEN 'create' THEN round((1 + 6.9 * pg_temp.u(s.i, 30))::numeric, 4) END,
                        'bytes_written', CASE WHEN f.op IN ('create', 'modify', 'encrypt') THEN floor(pg_temp.u(s.i, 31) * 4000000)::bigint END,
                        'size', CASE WHEN f.op <> 'delete' THEN floor(pg_temp.u(s.i, 32) * 8000000)::bigint END,
                        'sha256_before', CASE WHEN f.op IN ('modify', 'encrypt', 'rename', 'delete') THEN pg_temp.hex64(f.path) END,
                        'sha256_after', CASE WHEN f.op IN ('create', 'modify', 'encrypt', 'permission_change') THEN pg_temp.hex64(f.path || s.e) END)))
                WHEN t.etype = 'network_connection' THEN jsonb_build_object('net', jsonb_build_object(
                    'proto', CASE WHEN pg_temp.u(s.i, 40) < 0.9 THEN 'tcp' ELSE 'udp' END, 'direction', 'outbound',
                    'src', '10.' || (16 + s.m / 65536) || '.' || (s.m / 256) % 256 || '.' || s.m % 256,
                    'sport', 49152 + floor(pg_temp.u(s.i, 41) * 16000)::int,
                    'dst', (floor(pg_temp.u(s.i, 42) * 223) + 1)::int || '.' || floor(pg_temp.u(s.i, 43) * 255)::int || '.'
                           || floor(pg_temp.u(s.i, 44) * 255)::int || '.' || floor(pg_temp.u(s.i, 45) * 255)::int,
                    'dport', pg_temp.pick('{{443,443,443,80,53,445,3389,8443}}', pg_temp.u(s.i, 46))::int,
                    'bytes_out', floor(pg_temp.u(s.i, 47) * 200000)::int,
                    'process', img.image))
                WHEN t.etype = 'registry_change' THEN jsonb_build_object('registry', jsonb_build_object(
                    'key', pg_temp.pick(ARRAY['HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run', 'HKCU\\Software\\Classes\\.txt', 'HKLM\\SYSTEM\\CurrentControlSet\\Services\\WinDefend', 'HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows Defender'], pg_temp.u(s.i, 50)),
                    'value', 'v' || floor(pg_temp.u(s.i, 51) * 100)::int, 'op', pg_temp.pick('{{set,set,delete,create}}', pg_temp.u(s.i, 52)),
                    'process', img.image))
                WHEN t.etype = 'volume_shadow_copy' THEN jsonb_build_object('vss', jsonb_build_object(
                    'op', CASE WHEN pg_temp.infected(s.m) THEN 'delete' ELSE 'create' END,
                    'tool', CASE WHEN pg_temp.infected(s.m) THEN 'vssadmin.exe' ELSE 'VSSVC.exe' END,
                    'cmdline', CASE WHEN pg_temp.infected(s.m) THEN 'vssadmin.exe delete shadows /all /quiet' ELSE 'scheduled backup snapshot' END))
                WHEN t.etype = 'service_change' THEN jsonb_build_object('service', jsonb_build_object(
                    'name', pg_temp.pick('{{wuauserv,BITS,Spooler,sshd,cron,RansomEyeAgent}}', pg_temp.u(s.i, 60)),
                    'op', pg_temp.pick('{{start,stop,start,config}}', pg_temp.u(s.i, 61)), 'start_type', 'auto'))
                ELSE jsonb_build_object('health', jsonb_build_object(
                    'cpu_pct', round((pg_temp.u(s.i, 70) * 40)::numeric, 1), 'mem_mb', 80 + floor(pg_temp.u(s.i, 71) * 120)::int,
                    'queue', floor(pg_temp.u(s.i, 72) * 50)::int, 'dropped', 0, 'driver', 'ok', 'tamper', false))
              END AS payload
      FROM (SELECT i, ((i - 1) % {M} + 1)::int AS m, ((i - 1) / {M} + 1)::int AS e
              FROM generate_series(1::bigint, {M * E}::bigint) AS i) s
     CROSS JOIN LATERAL (SELECT CASE WHEN s.e % 8 = 1 THEN 'process_start'
                                     WHEN pg_temp.u(s.i, 1) < 0.14 THEN 'process_exit'
                                     WHEN pg_temp.u(s.i, 1) < 0.22 THEN 'file_create'
                                     WHEN pg_temp.u(s.i, 1) < 0.42 THEN 'file_modify'
                                     WHEN pg_temp.u(s.i, 1) < 0.45 THEN 'file_rename'
                                     WHEN pg_temp.u(s.i, 1) < 0.48 THEN 'file_delete'
                                     WHEN pg_temp.u(s.i, 1) < 0.65 THEN 'file_read'
                                     WHEN pg_temp.u(s.i, 1) < 0.77 THEN 'registry_change'
                                     WHEN pg_temp.u(s.i, 1) < 0.95 THEN 'network_connection'
                                     WHEN pg_temp.u(s.i, 1) < 0.953 THEN 'volume_shadow_copy'
                                     WHEN pg_temp.u(s.i, 1) < 0.973 THEN 'service_change'
                                     ELSE 'agent_status' END::event_type AS etype) t
     CROSS JOIN LATERAL (SELECT timestamptz '{T0}' - interval '30 days'
                                + ((s.e - 1)::float8 / {E}) * interval '30 days'
                                + pg_temp.u(s.i, 2) * interval '60 seconds' AS observed_at) o
     CROSS JOIN LATERAL (SELECT CASE WHEN pg_temp.os(s.m) = 'windows' THEN
                                  pg_temp.pick(ARRAY['C:\\Windows\\System32\\svchost.exe', 'C:\\Windows\\explorer.exe', 'C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE', 'C:\\Program Files\\Microsoft Office\\root\\Office16\\EXCEL.EXE', 'C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe', 'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe', 'C:\\Windows\\System32\\cmd.exe', 'C:\\Windows\\System32\\RuntimeBroker.exe', 'C:\\Program Files\\Microsoft OneDrive\\OneDrive.exe', 'C:\\Windows\\System32\\wbem\\WmiPrvSE.exe', 'C:\\Users\\Public\\Downloads\\invoice_viewer.exe', 'C:\\Windows\\System32\\SearchIndexer.exe'], pg_temp.u(s.i, 80))
                                ELSE pg_temp.pick('{{/usr/bin/bash,/usr/sbin/sshd,/usr/bin/python3,/usr/lib/systemd/systemd,/usr/bin/java,/usr/sbin/nginx,/usr/bin/curl,/tmp/.x/kworkerd,/Applications/Safari.app/Contents/MacOS/Safari,/usr/bin/rsync}}', pg_temp.u(s.i, 80)) END AS image,
                                CASE WHEN pg_temp.os(s.m) = 'windows' THEN
                                  pg_temp.pick(ARRAY['C:\\Windows\\explorer.exe', 'C:\\Windows\\System32\\services.exe', 'C:\\Windows\\System32\\svchost.exe', 'C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE'], pg_temp.u(s.i, 81))
                                ELSE pg_temp.pick('{{/usr/lib/systemd/systemd,/usr/sbin/sshd,/usr/bin/bash,/usr/sbin/cron}}', pg_temp.u(s.i, 81)) END AS parent) img
     CROSS JOIN LATERAL (SELECT CASE t.etype
                                  WHEN 'file_create' THEN 'create' WHEN 'file_rename' THEN 'rename'
                                  WHEN 'file_delete' THEN 'delete' WHEN 'file_read' THEN 'read'
                                  WHEN 'file_modify' THEN
                                    CASE WHEN pg_temp.infected(s.m) AND pg_temp.u(s.i, 33) < 0.35 THEN 'encrypt'
                                         WHEN pg_temp.u(s.i, 33) > 0.97 THEN 'permission_change' ELSE 'modify' END
                                END AS op,
                                pg_temp.pick('{{.docx,.xlsx,.pdf,.jpg,.txt,.log,.dll,.tmp,.zip,.pst,.pptx,.csv}}', pg_temp.u(s.i, 34)) AS ext) f0
     CROSS JOIN LATERAL (SELECT f0.op, f0.ext,
                                CASE WHEN pg_temp.os(s.m) = 'windows'
                                     THEN 'C:\\Users\\u' || lpad(((s.m * 7) % 4000)::text, 4, '0') || '\\'
                                          || pg_temp.pick(ARRAY['Documents', 'Desktop', 'Downloads', 'AppData\\Local\\Temp', 'Documents\\Finance', 'Pictures'], pg_temp.u(s.i, 35))
                                     ELSE '/home/u' || lpad(((s.m * 7) % 4000)::text, 4, '0') || '/'
                                          || pg_temp.pick('{{docs,src,tmp,.cache,reports}}', pg_temp.u(s.i, 35)) END
                                || CASE WHEN pg_temp.os(s.m) = 'windows' THEN '\\' ELSE '/' END
                                || 'file_' || to_hex((hashint8extended(s.i, 36) & 1048575)::int) || f0.ext AS path) f
    OFFSET 0  -- keep the subquery: the payload is built once, then stored and hashed
  ) x"""),
        ("process_events", """
INSERT INTO process_events (process_event_id, raw_event_id, machine_id, observed_at, action, pid, ppid, image_path,
                            command_line, parent_image_path, user_name, user_sid, integrity_level, sha256, sha1, md5,
                            is_signed, signer, exit_code)
SELECT pg_temp.uid('pe', r.machine_id || ':' || r.sequence_no), r.event_id, r.machine_id, r.observed_at,
       (p->>'action')::process_action, (p->>'pid')::int, (p->>'ppid')::int, p->>'image', p->>'cmdline',
       p->>'parent_image', r.payload->'user'->>'name', r.payload->'user'->>'sid', p->>'integrity',
       p->'hashes'->>'sha256', p->'hashes'->>'sha1', p->'hashes'->>'md5', (p->>'signed')::boolean, p->>'signer',
       (p->>'exit_code')::int
  FROM raw_events r CROSS JOIN LATERAL (SELECT r.payload->'process' AS p) pp
 WHERE r.event_type IN ('process_start', 'process_exit')"""),
        # Each file event names the process event that opened its block of 8 (sequence_no 8k+1 is
        # always a process start) for 90 % of rows; the rest come from processes not seen.
        ("file_events", """
INSERT INTO file_events (file_event_id, raw_event_id, machine_id, process_event_id, observed_at, operation, pid,
                         file_path, previous_path, file_extension, entropy, bytes_written, file_size_bytes,
                         sha256_before, sha256_after)
SELECT pg_temp.uid('fe', r.machine_id || ':' || r.sequence_no), r.event_id, r.machine_id,
       CASE WHEN pg_temp.ut(r.machine_id || ':' || r.sequence_no, 90) < 0.9
            THEN pg_temp.uid('pe', r.machine_id || ':' || (r.sequence_no - (r.sequence_no - 1) % 8)) END,
       r.observed_at, (f->>'op')::file_operation, (r.payload->'process'->>'pid')::int, f->>'path',
       f->>'previous_path', f->>'ext', (f->>'entropy')::numeric, (f->>'bytes_written')::bigint,
       (f->>'size')::bigint, f->>'sha256_before', f->>'sha256_after'
  FROM raw_events r CROSS JOIN LATERAL (SELECT r.payload->'file' AS f) ff
 WHERE r.event_type IN ('file_create', 'file_modify', 'file_rename', 'file_delete', 'file_read')"""),
        ("detections", f"""
INSERT INTO detections (detection_id, machine_id, rule_id, rule_version, raw_event_id, severity, confidence, status,
                        title, evidence, detected_at, resolved_at, resolved_by, created_at, updated_at)
SELECT pg_temp.uid('det', d.key), d.mid, dr.rule_id, dr.version,
       CASE WHEN pg_temp.ut(d.key, 101) < 0.85
            THEN pg_temp.uid('re', d.mid || ':' || (1 + floor(pg_temp.ut(d.key, 102) * {E}))::int) END,
       CASE WHEN pg_temp.ut(d.key, 103) < 0.8 THEN dr.default_severity
            ELSE (enum_range(NULL::severity_level))[1 + floor(pg_temp.ut(d.key, 104) * 5)::int] END,
       round((0.5 + 0.499 * pg_temp.ut(d.key, 105))::numeric, 3), d.status::detection_status,
       dr.name || ' on ' || pg_temp.host(d.m),
       jsonb_build_object('rule', dr.rule_id, 'host', pg_temp.host(d.m), 'matched_events', 1 + floor(pg_temp.ut(d.key, 106) * 40)::int,
                          'window_s', 60, 'summary', dr.description),
       d.detected_at, d.resolved_at,
       CASE WHEN d.resolved_at IS NOT NULL THEN pg_temp.pick('{{analyst.kim,analyst.ortiz,analyst.novak,system}}', pg_temp.ut(d.key, 107)) END,
       d.detected_at, coalesce(d.resolved_at, d.detected_at)
  FROM (SELECT m, k, pg_temp.mid(m) AS mid, pg_temp.mid(m) || ':' || k AS key,
               timestamptz '{T0}' - interval '30 days' + ((k - 0.5) / {D}) * interval '30 days'
                 + pg_temp.u(m * 1000 + k, 108) * interval '4 hours' AS detected_at,
               st.status,
               CASE WHEN st.status IN ('false_positive', 'suppressed', 'resolved')
                    THEN timestamptz '{T0}' - interval '30 days' + ((k - 0.5) / {D}) * interval '30 days'
                         + pg_temp.u(m * 1000 + k, 108) * interval '4 hours'
                         + interval '20 minutes' + pg_temp.u(m * 1000 + k, 109) * interval '3 days' END AS resolved_at
          FROM generate_series(1, {M}) AS m CROSS JOIN generate_series(1, {D}) AS k
         CROSS JOIN LATERAL (SELECT CASE WHEN pg_temp.u(m * 1000 + k, 110) < 0.16 THEN 'new'
                                         WHEN pg_temp.u(m * 1000 + k, 110) < 0.26 THEN 'acknowledged'
                                         WHEN pg_temp.u(m * 1000 + k, 110) < 0.33 THEN 'confirmed'
                                         WHEN pg_temp.u(m * 1000 + k, 110) < 0.53 THEN 'false_positive'
                                         WHEN pg_temp.u(m * 1000 + k, 110) < 0.61 THEN 'suppressed'
                                         ELSE 'resolved' END AS status) st) d
  JOIN (SELECT rule_id, version, default_severity, name, description,
               row_number() OVER (ORDER BY rule_id) AS n, count(*) OVER () AS cnt FROM detection_rules) dr
    ON dr.n = 1 + floor(pow(pg_temp.ut(d.key, 111), 2) * dr.cnt)::int"""),
        ("incidents", f"""
INSERT INTO incidents (incident_id, title, description, severity, status, primary_machine_id, assigned_to,
                       opened_at, contained_at, closed_at, created_at, updated_at)
SELECT pg_temp.uid('inc', i.key), i.title, i.descr, i.severity::severity_level, i.status::incident_status,
       CASE WHEN pg_temp.ut(i.key, 201) < 0.97 THEN pg_temp.mid(i.m) END,
       CASE WHEN i.status <> 'open' THEN pg_temp.pick('{{analyst.kim,analyst.ortiz,analyst.novak,ir-team}}', pg_temp.ut(i.key, 202)) END,
       i.opened_at,
       CASE WHEN i.status IN ('contained', 'resolved') THEN i.opened_at + interval '25 minutes' + pg_temp.ut(i.key, 203) * interval '6 hours' END,
       CASE WHEN i.status IN ('resolved', 'false_positive') THEN i.opened_at + interval '8 hours' + pg_temp.ut(i.key, 204) * interval '5 days' END,
       i.opened_at,
       CASE WHEN i.status IN ('resolved', 'false_positive') THEN i.opened_at + interval '8 hours' + pg_temp.ut(i.key, 204) * interval '5 days'
            WHEN i.status = 'contained' THEN i.opened_at + interval '25 minutes' + pg_temp.ut(i.key, 203) * interval '6 hours'
            ELSE i.opened_at END
  FROM (SELECT m, j, pg_temp.mid(m) || ':' || j AS key,
               CASE WHEN pg_temp.infected(m) THEN 'Ransomware activity on ' ELSE
                 pg_temp.pick('{{Suspicious execution on ,Possible credential theft on ,Unusual file activity on ,Policy violation on }}', pg_temp.u(m * 1000 + j, 205)) END
                 || pg_temp.host(m) AS title,
               'Opened from ' || least(3, {D} - 3 * (j - 1)) || ' related detections.' AS descr,
               CASE WHEN pg_temp.infected(m) THEN 'critical'
                    ELSE pg_temp.pick('{{medium,high,high,critical,low}}', pg_temp.u(m * 1000 + j, 206)) END AS severity,
               CASE WHEN pg_temp.u(m * 1000 + j, 207) < 0.20 THEN 'open'
                    WHEN pg_temp.u(m * 1000 + j, 207) < 0.32 THEN 'investigating'
                    WHEN pg_temp.u(m * 1000 + j, 207) < 0.40 THEN 'contained'
                    WHEN pg_temp.u(m * 1000 + j, 207) < 0.88 THEN 'resolved'
                    ELSE 'false_positive' END AS status,
               timestamptz '{T0}' - interval '30 days' + ((3 * (j - 1) + 0.5) / {D}) * interval '30 days'
                 + interval '4 hours 10 minutes' AS opened_at
          FROM generate_series(1, {M}) AS m CROSS JOIN generate_series(1, {INC}) AS j) i"""),
        ("incident_detections", f"""
INSERT INTO incident_detections (incident_id, detection_id, linked_at, linked_by)
SELECT pg_temp.uid('inc', pg_temp.mid(m) || ':' || ((k - 1) / 3 + 1)), pg_temp.uid('det', pg_temp.mid(m) || ':' || k),
       timestamptz '{T0}' - interval '30 days' + ((3 * ((k - 1) / 3) + 0.5) / {D}) * interval '30 days'
         + interval '4 hours 10 minutes' + (k - 1) % 3 * interval '1 minute',
       CASE WHEN pg_temp.u(m * 1000 + k, 301) < 0.8 THEN 'system' ELSE 'analyst.kim' END
  FROM generate_series(1, {M}) AS m CROSS JOIN generate_series(1, {D}) AS k
 WHERE (k - 1) / 3 + 1 <= {INC}"""),
        ("incident_notes", """
INSERT INTO incident_notes (note_id, incident_id, author, body, created_at)
SELECT pg_temp.uid('note', i.incident_id::text || ':' || n), i.incident_id,
       CASE WHEN n = 1 THEN 'system' ELSE coalesce(i.assigned_to, 'analyst.kim') END,
       CASE n WHEN 1 THEN 'Incident opened automatically from correlated detections (' || i.severity || ').'
              WHEN 2 THEN 'Triage: reviewed process tree and file activity; ' ||
                          pg_temp.pick('{benign admin script,confirmed malicious,needs more data,user interviewed}', pg_temp.ut(i.incident_id::text, 401))
              ELSE 'Status ' || i.status || ': ' ||
                   pg_temp.pick('{host reimaged and returned to service,isolation lifted after cleanup,closed as duplicate,escalated to IR retainer}', pg_temp.ut(i.incident_id::text, 402))
       END,
       i.opened_at + n * interval '17 minutes'
  FROM incidents i CROSS JOIN generate_series(1, 3) AS n
 WHERE n = 1 OR (n = 2 AND i.status <> 'open') OR (n = 3 AND i.closed_at IS NOT NULL)"""),
        ("policy_assignments", f"""
INSERT INTO policy_assignments (policy_id, machine_id, priority, assigned_by, assigned_at)
SELECT pg_temp.uid('policy', a.n::text), pg_temp.mid(m), a.priority, a.assigned_by,
       pg_temp.first_seen(m) + a.n * interval '1 minute'
  FROM generate_series(1, {M}) AS m
 CROSS JOIN LATERAL (
       SELECT 1 AS n, 1000 AS priority, 'auto-enrol' AS assigned_by
       UNION ALL
       SELECT CASE WHEN pg_temp.os(m) = 'windows' AND NOT pg_temp.server(m) THEN 2
                   WHEN pg_temp.os(m) = 'windows' THEN 3 WHEN pg_temp.os(m) = 'linux' THEN 4 ELSE 5 END,
              100, 'auto-enrol'
        WHERE pg_temp.os(m) <> 'other'
       UNION ALL
       SELECT 6, 10, 'admin' WHERE pg_temp.server(m) AND pg_temp.u(m, 501) < 0.1) a"""),
        # Containment for contained/resolved incidents (isolate, and release once resolved), plus
        # remediation for about 12 % of detections, in every lifecycle state.
        ("response_actions", """
INSERT INTO response_actions (action_id, incident_id, detection_id, machine_id, policy_id, action_type, status,
                              parameters, requested_by, requested_at, approved_by, approved_at, dispatched_at,
                              completed_at, result, error_message)
SELECT pg_temp.uid('ra', a.key), a.incident_id, a.detection_id, a.machine_id, a.policy_id,
       a.action_type::response_action_type, a.status::response_action_status, a.parameters, a.requested_by,
       a.requested_at,
       CASE WHEN a.approved THEN a.approver END,
       CASE WHEN a.approved THEN a.requested_at + interval '3 minutes' END,
       CASE WHEN a.status IN ('dispatched', 'succeeded', 'failed', 'expired') THEN a.requested_at + interval '4 minutes' END,
       CASE WHEN a.status IN ('succeeded', 'failed') THEN a.requested_at + interval '5 minutes'
            WHEN a.status IN ('cancelled', 'expired') THEN a.requested_at + interval '1 day' END,
       CASE WHEN a.status = 'succeeded' THEN jsonb_build_object('ok', true, 'agent_ack_ms', 180, 'detail', 'done')
            WHEN a.status = 'failed' THEN jsonb_build_object('ok', false, 'agent_ack_ms', 210) END,
       CASE WHEN a.status = 'failed' THEN 'agent reported: access denied (0x5)'
            WHEN a.status = 'expired' THEN 'agent did not pick the action up within 24 h' END
  FROM (
    SELECT 'inc:' || i.incident_id || ':' || x.n AS key, i.incident_id, NULL::uuid AS detection_id,
           i.primary_machine_id AS machine_id,
           CASE WHEN pg_temp.ut(i.incident_id::text, 601) < 0.5 THEN pg_temp.uid('policy', '2') END AS policy_id,
           x.action_type,
           CASE WHEN x.n = 1 THEN 'succeeded'
                WHEN i.status = 'resolved' THEN CASE WHEN pg_temp.ut(i.incident_id::text, 602) < 0.9 THEN 'succeeded' ELSE 'failed' END
                ELSE 'pending' END AS status,
           jsonb_build_object('reason', 'incident ' || i.status, 'allow', jsonb_build_array('10.0.0.10/32')) AS parameters,
           CASE WHEN x.n = 1 THEN 'policy-engine' ELSE coalesce(i.assigned_to, 'analyst.kim') END AS requested_by,
           i.opened_at + x.n * interval '10 minutes' AS requested_at,
           x.n = 1 OR i.status = 'resolved' AS approved, coalesce(i.assigned_to, 'analyst.kim') AS approver
      FROM incidents i
     CROSS JOIN LATERAL (SELECT 1 AS n, 'isolate' AS action_type
                         UNION ALL SELECT 2, 'release_isolation') x
     WHERE i.status IN ('contained', 'resolved') AND i.primary_machine_id IS NOT NULL
       AND (x.n = 1 OR i.status = 'resolved' OR pg_temp.ut(i.incident_id::text, 603) < 0.5)
    UNION ALL
    SELECT 'det:' || d.detection_id, NULL, d.detection_id, d.machine_id,
           CASE WHEN pg_temp.ut(d.detection_id::text, 611) < 0.3 THEN pg_temp.uid('policy', '3') END,
           pg_temp.pick('{kill_process,kill_process,quarantine_file,quarantine_file,block_hash,suspend_process,collect_artifacts,restore_file}',
                        pg_temp.ut(d.detection_id::text, 612)),
           s.status,
           jsonb_build_object('target', d.title, 'rule', d.rule_id, 'evidence_rows', 1 + d.confidence::int),
           pg_temp.pick('{policy-engine,analyst.kim,analyst.ortiz}', pg_temp.ut(d.detection_id::text, 613)),
           d.detected_at + interval '2 minutes',
           s.status NOT IN ('pending') AND NOT (s.status = 'cancelled' AND pg_temp.ut(d.detection_id::text, 614) < 0.5),
           'analyst.novak'
      FROM detections d
     CROSS JOIN LATERAL (SELECT CASE WHEN pg_temp.ut(d.detection_id::text, 615) < 0.10 THEN 'pending'
                                     WHEN pg_temp.ut(d.detection_id::text, 615) < 0.18 THEN 'approved'
                                     WHEN pg_temp.ut(d.detection_id::text, 615) < 0.26 THEN 'dispatched'
                                     WHEN pg_temp.ut(d.detection_id::text, 615) < 0.78 THEN 'succeeded'
                                     WHEN pg_temp.ut(d.detection_id::text, 615) < 0.88 THEN 'failed'
                                     WHEN pg_temp.ut(d.detection_id::text, 615) < 0.94 THEN 'cancelled'
                                     ELSE 'expired' END AS status) s
     WHERE pg_temp.ut(d.detection_id::text, 616) < 0.12 OR d.severity = 'critical' AND d.status = 'confirmed'
  ) a"""),
    ]


def load(conn: psycopg.Connection, machines: int = 20, events_per_machine: int = 50, seed: int = 1,
         progress: Progress | None = None) -> dict[str, int]:
    """Fill every table of the v1.0.0 schema; returns the number of rows inserted per table.

    One transaction (a savepoint if the caller already has one open). The database must be at
    release 1.0.0 or a later release that keeps the 1.0.0 tables; the tables are expected empty.
    """
    if machines < 1 or events_per_machine < 1:
        raise ValueError("machines and events_per_machine must be at least 1")
    counts: dict[str, int] = {}
    with conn.transaction():
        # JIT would spend seconds compiling these wide expressions for no gain.
        conn.execute("SET LOCAL jit = off")
        conn.execute("SELECT setseed(%s)", ((seed % 1000) / 1000.0,))
        conn.execute(_helpers(seed))
        for table, stmt in _statements(machines, events_per_machine):
            if progress:
                progress(f"loading {table}")
            cur = conn.execute(stmt)
            counts[table] = cur.rowcount
        conn.execute("DROP FUNCTION pg_temp.first_seen, pg_temp.infected, pg_temp.host, pg_temp.server, "
                     "pg_temp.os, pg_temp.aid, pg_temp.mid, pg_temp.pick, pg_temp.hex64, pg_temp.uid, pg_temp.ut, "
                     "pg_temp.u")
    return {t: counts.get(t, 0) for t in TABLES}


def row_fingerprint(conn: psycopg.Connection, table: str) -> str:
    """md5 over the table's rows in primary-key order, v1.0.0 columns only.

    Each row is rendered as a row literal with fixed session formatting (UTC, ISO dates), hashed,
    and the row hashes are hashed in order: a table of millions of rows stays well below the
    server's 1 GB value limit.
    """
    if table not in V1_COLUMNS:
        raise ValueError(f"{table} is not a table of the v1.0.0 schema")
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in V1_COLUMNS[table])
    order = sql.SQL(", ").join(sql.Identifier(c) for c in V1_PRIMARY_KEYS[table])
    query = sql.SQL("SELECT md5(coalesce(string_agg(md5(ROW({cols})::text), '' ORDER BY {order}), '')) "
                    "FROM {table}").format(cols=cols, order=order, table=sql.Identifier(table))
    with conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; "
                     "SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1")
        return conn.execute(query).fetchone()[0]


def fingerprints(conn: psycopg.Connection) -> dict[str, str]:
    return {t: row_fingerprint(conn, t) for t in TABLES}
