-- RansomEye Core baseline migration (down): removes schema bundle v1.0.0.
-- Drops every table created by 00..05 in reverse dependency order (their
-- indexes and constraints, including those from 06_indexes.sql, go with
-- them), then the enum types. Leaves schema public empty.

-- 05_response_policy.sql
DROP TABLE response_actions;
DROP TABLE policy_assignments;
DROP TABLE policies;

-- 04_incidents.sql
DROP TABLE incident_notes;
DROP TABLE incident_detections;
DROP TABLE incidents;

-- 03_detections.sql
DROP TABLE detections;
DROP TABLE detection_rules;

-- 02_normalized_activity.sql
DROP TABLE file_events;
DROP TABLE process_events;

-- 01_raw_events.sql
DROP TABLE raw_events;

-- 00_core_identity.sql
DROP TABLE agents;
DROP TABLE machines;

-- Enum types (reverse order of creation)
DROP TYPE response_action_status;
DROP TYPE response_action_type;
DROP TYPE policy_mode;
DROP TYPE incident_status;
DROP TYPE detection_status;
DROP TYPE severity_level;
DROP TYPE file_operation;
DROP TYPE process_action;
DROP TYPE event_type;
DROP TYPE agent_status;
DROP TYPE machine_status;
DROP TYPE os_family;
