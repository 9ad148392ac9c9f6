-- =============================================================================
-- RansomEye Core v1.0.0 schema bundle -- 06_indexes.sql
-- Secondary indexes for the workload (time-range scans per machine, type
-- filters, JSONB containment, open-work queues, FK-supporting indexes) and
-- the partial unique indexes that enforce business rules. Every index is named
-- explicitly. Primary keys and UNIQUE constraints already have their own
-- indexes (created with the tables in 00..05) and are not repeated here.
-- =============================================================================

-- -----------------------------------------------------------------------------
-- machines / agents
-- -----------------------------------------------------------------------------
CREATE INDEX ix_machines_hostname_lower ON machines (lower(hostname));
CREATE INDEX ix_machines_status_last_seen ON machines (status, last_seen DESC);

CREATE INDEX ix_agents_machine_id ON agents (machine_id);
-- Business rule: at most one non-revoked agent per machine.
CREATE UNIQUE INDEX ux_agents_one_live_agent_per_machine
    ON agents (machine_id) WHERE status <> 'revoked';
CREATE INDEX ix_agents_last_heartbeat_live
    ON agents (last_heartbeat_at) WHERE status <> 'revoked';

-- -----------------------------------------------------------------------------
-- raw_events
-- -----------------------------------------------------------------------------
-- Time-range queries per machine (timeline views, investigations).
CREATE INDEX ix_raw_events_machine_observed_at ON raw_events (machine_id, observed_at DESC);
-- Filtering by event type over a time window.
CREATE INDEX ix_raw_events_event_type_observed_at ON raw_events (event_type, observed_at DESC);
-- Ingestion time is append-ordered: BRIN is small and effective for
-- retention purges and "received in the last N minutes" scans.
CREATE INDEX ix_raw_events_received_at_brin ON raw_events USING brin (received_at);
-- JSONB containment queries on the payload (payload @> '{...}').
CREATE INDEX ix_raw_events_payload_gin ON raw_events USING gin (payload jsonb_path_ops);
-- FK support (agents ON DELETE SET NULL).
CREATE INDEX ix_raw_events_agent_id ON raw_events (agent_id);
-- De-duplication of agent retransmissions.
CREATE UNIQUE INDEX ux_raw_events_agent_sequence
    ON raw_events (agent_id, sequence_no)
    WHERE agent_id IS NOT NULL AND sequence_no IS NOT NULL;

-- -----------------------------------------------------------------------------
-- process_events  (raw_event_id is covered by uq_process_events_raw_event)
-- -----------------------------------------------------------------------------
CREATE INDEX ix_process_events_machine_observed_at ON process_events (machine_id, observed_at DESC);
CREATE INDEX ix_process_events_machine_pid ON process_events (machine_id, pid, observed_at DESC);
CREATE INDEX ix_process_events_sha256 ON process_events (sha256) WHERE sha256 IS NOT NULL;

-- -----------------------------------------------------------------------------
-- file_events  (raw_event_id is covered by uq_file_events_raw_event)
-- -----------------------------------------------------------------------------
CREATE INDEX ix_file_events_machine_observed_at ON file_events (machine_id, observed_at DESC);
CREATE INDEX ix_file_events_process_event_id ON file_events (process_event_id);
-- Ransomware signal: bursts of encrypt/rename/high-entropy writes per machine.
CREATE INDEX ix_file_events_suspicious_ops
    ON file_events (machine_id, observed_at DESC)
    WHERE operation IN ('encrypt', 'rename', 'delete');
CREATE INDEX ix_file_events_high_entropy
    ON file_events (machine_id, observed_at DESC)
    WHERE entropy >= 7.5;
CREATE INDEX ix_file_events_sha256_after ON file_events (sha256_after) WHERE sha256_after IS NOT NULL;

-- -----------------------------------------------------------------------------
-- detection_rules / detections
-- -----------------------------------------------------------------------------
CREATE INDEX ix_detections_machine_detected_at ON detections (machine_id, detected_at DESC);
CREATE INDEX ix_detections_rule_id ON detections (rule_id, detected_at DESC);
CREATE INDEX ix_detections_raw_event_id ON detections (raw_event_id) WHERE raw_event_id IS NOT NULL;
-- Analyst work queue: unresolved detections by severity and age.
CREATE INDEX ix_detections_unresolved
    ON detections (severity, detected_at DESC)
    WHERE status IN ('new', 'acknowledged', 'confirmed');

-- -----------------------------------------------------------------------------
-- incidents / incident_detections / incident_notes
-- -----------------------------------------------------------------------------
-- Open-incident queue.
CREATE INDEX ix_incidents_open
    ON incidents (severity, opened_at DESC)
    WHERE status IN ('open', 'investigating', 'contained');
CREATE INDEX ix_incidents_opened_at ON incidents (opened_at DESC);
CREATE INDEX ix_incidents_primary_machine_id ON incidents (primary_machine_id)
    WHERE primary_machine_id IS NOT NULL;
-- PK (incident_id, detection_id) covers incident_id lookups; this one the reverse.
CREATE INDEX ix_incident_detections_detection_id ON incident_detections (detection_id);
CREATE INDEX ix_incident_notes_incident_created_at ON incident_notes (incident_id, created_at);

-- -----------------------------------------------------------------------------
-- policies / policy_assignments / response_actions
-- -----------------------------------------------------------------------------
-- PK (policy_id, machine_id) covers policy_id lookups; this one the reverse.
CREATE INDEX ix_policy_assignments_machine_id ON policy_assignments (machine_id, priority);

CREATE INDEX ix_response_actions_incident_id ON response_actions (incident_id)
    WHERE incident_id IS NOT NULL;
CREATE INDEX ix_response_actions_detection_id ON response_actions (detection_id)
    WHERE detection_id IS NOT NULL;
CREATE INDEX ix_response_actions_policy_id ON response_actions (policy_id)
    WHERE policy_id IS NOT NULL;
CREATE INDEX ix_response_actions_machine_requested_at ON response_actions (machine_id, requested_at DESC);
-- Dispatcher queue: actions not yet finished.
CREATE INDEX ix_response_actions_in_flight
    ON response_actions (machine_id, requested_at)
    WHERE status IN ('pending', 'approved', 'dispatched');
