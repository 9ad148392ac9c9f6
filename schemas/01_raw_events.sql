-- =============================================================================
-- RansomEye Core v1.0.0 schema bundle -- 01_raw_events.sql
-- Raw telemetry exactly as received from agents (append-only JSONB payloads),
-- and the event_type enum. Normalized views of these events live in 02.
-- =============================================================================

CREATE TYPE event_type AS ENUM (
    'process_start',
    'process_exit',
    'file_create',
    'file_modify',
    'file_rename',
    'file_delete',
    'file_read',
    'registry_change',
    'network_connection',
    'volume_shadow_copy',   -- shadow copy creation/deletion (vssadmin, wmic, ...)
    'service_change',
    'agent_status'          -- agent self-reported health / tamper events
);

-- -----------------------------------------------------------------------------
-- raw_events: append-only. observed_at is the agent's clock, received_at the
-- server's. No ordering CHECK between the two: endpoint clocks drift.
-- (agent_id, sequence_no) de-duplicates agent retransmissions (06_indexes.sql).
-- -----------------------------------------------------------------------------
CREATE TABLE raw_events (
    event_id        UUID            NOT NULL DEFAULT gen_random_uuid(),
    machine_id      VARCHAR(255)    NOT NULL,
    agent_id        UUID,
    event_type      event_type      NOT NULL,
    observed_at     TIMESTAMPTZ     NOT NULL,
    received_at     TIMESTAMPTZ     NOT NULL DEFAULT now(),
    sequence_no     BIGINT,
    schema_version  SMALLINT        NOT NULL DEFAULT 1,
    payload         JSONB           NOT NULL,
    payload_sha256  CHAR(64),
    CONSTRAINT pk_raw_events PRIMARY KEY (event_id),
    CONSTRAINT fk_raw_events_machine FOREIGN KEY (machine_id)
        REFERENCES machines (machine_id) ON DELETE RESTRICT,
    CONSTRAINT fk_raw_events_agent FOREIGN KEY (agent_id)
        REFERENCES agents (agent_id) ON DELETE SET NULL,
    CONSTRAINT ck_raw_events_payload_is_object
        CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT ck_raw_events_sequence_no_non_negative
        CHECK (sequence_no IS NULL OR sequence_no >= 0),
    CONSTRAINT ck_raw_events_schema_version_positive
        CHECK (schema_version > 0),
    CONSTRAINT ck_raw_events_payload_sha256_hex
        CHECK (payload_sha256 IS NULL OR payload_sha256 ~ '^[0-9a-f]{64}$')
);

COMMENT ON TABLE raw_events IS 'Append-only raw agent telemetry; payload is the agent JSON object as received.';
COMMENT ON COLUMN raw_events.observed_at IS 'Event time on the endpoint (agent clock).';
COMMENT ON COLUMN raw_events.received_at IS 'Ingestion time on the server.';
