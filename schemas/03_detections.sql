-- =============================================================================
-- RansomEye Core v1.0.0 schema bundle -- 03_detections.sql
-- Detection rules (catalogue) and detections (rule hits on a machine), plus
-- the severity_level enum shared with incidents (04).
-- =============================================================================

CREATE TYPE severity_level AS ENUM (
    'informational',
    'low',
    'medium',
    'high',
    'critical'
);

CREATE TYPE detection_status AS ENUM (
    'new',
    'acknowledged',
    'confirmed',        -- analyst confirmed malicious, still being handled
    'false_positive',
    'suppressed',
    'resolved'
);

-- -----------------------------------------------------------------------------
-- detection_rules: catalogue of rules the engine evaluates. rule_id is a
-- human-readable stable identifier (e.g. 'RE-FILE-0001').
-- -----------------------------------------------------------------------------
CREATE TABLE detection_rules (
    rule_id             VARCHAR(128)    NOT NULL,
    name                VARCHAR(255)    NOT NULL,
    description         TEXT,
    version             INTEGER         NOT NULL DEFAULT 1,
    default_severity    severity_level  NOT NULL,
    mitre_techniques    TEXT[]          NOT NULL DEFAULT '{}',
    definition          JSONB           NOT NULL DEFAULT '{}'::jsonb,
    enabled             BOOLEAN         NOT NULL DEFAULT true,
    created_at          TIMESTAMPTZ     NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ     NOT NULL DEFAULT now(),
    CONSTRAINT pk_detection_rules PRIMARY KEY (rule_id),
    CONSTRAINT uq_detection_rules_name UNIQUE (name),
    CONSTRAINT ck_detection_rules_rule_id_format CHECK (rule_id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]*$'),
    CONSTRAINT ck_detection_rules_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT ck_detection_rules_version_positive CHECK (version > 0),
    CONSTRAINT ck_detection_rules_definition_is_object CHECK (jsonb_typeof(definition) = 'object'),
    CONSTRAINT ck_detection_rules_updated_after_created CHECK (updated_at >= created_at)
);

COMMENT ON TABLE detection_rules IS 'Catalogue of detection rules evaluated by the engine.';

-- -----------------------------------------------------------------------------
-- detections: one rule hit. raw_event_id is the event that triggered it;
-- ON DELETE RESTRICT keeps triggering evidence from being purged by retention
-- jobs while the detection exists. Nullable for detections not tied to a
-- single event (e.g. agent silence / tamper heuristics).
-- resolved_at is set exactly when the status is terminal.
-- -----------------------------------------------------------------------------
CREATE TABLE detections (
    detection_id        UUID                NOT NULL DEFAULT gen_random_uuid(),
    machine_id          VARCHAR(255)        NOT NULL,
    rule_id             VARCHAR(128)        NOT NULL,
    rule_version        INTEGER             NOT NULL,
    raw_event_id        UUID,
    severity            severity_level      NOT NULL,
    confidence          NUMERIC(4,3)        NOT NULL,
    status              detection_status    NOT NULL DEFAULT 'new',
    title               VARCHAR(512)        NOT NULL,
    evidence            JSONB               NOT NULL DEFAULT '{}'::jsonb,
    detected_at         TIMESTAMPTZ         NOT NULL DEFAULT now(),
    resolved_at         TIMESTAMPTZ,
    resolved_by         VARCHAR(255),
    created_at          TIMESTAMPTZ         NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ         NOT NULL DEFAULT now(),
    CONSTRAINT pk_detections PRIMARY KEY (detection_id),
    CONSTRAINT fk_detections_machine FOREIGN KEY (machine_id)
        REFERENCES machines (machine_id) ON DELETE RESTRICT,
    CONSTRAINT fk_detections_rule FOREIGN KEY (rule_id)
        REFERENCES detection_rules (rule_id) ON DELETE RESTRICT,
    CONSTRAINT fk_detections_raw_event FOREIGN KEY (raw_event_id)
        REFERENCES raw_events (event_id) ON DELETE RESTRICT,
    CONSTRAINT ck_detections_rule_version_positive CHECK (rule_version > 0),
    CONSTRAINT ck_detections_confidence_range CHECK (confidence >= 0 AND confidence <= 1),
    CONSTRAINT ck_detections_title_not_blank CHECK (btrim(title) <> ''),
    CONSTRAINT ck_detections_evidence_is_object CHECK (jsonb_typeof(evidence) = 'object'),
    CONSTRAINT ck_detections_resolved_consistency
        CHECK ((status IN ('false_positive', 'suppressed', 'resolved')) = (resolved_at IS NOT NULL)),
    CONSTRAINT ck_detections_resolved_after_detected
        CHECK (resolved_at IS NULL OR resolved_at >= detected_at),
    CONSTRAINT ck_detections_updated_after_created CHECK (updated_at >= created_at)
);

COMMENT ON TABLE detections IS 'Detection rule hits on a machine.';
COMMENT ON COLUMN detections.confidence IS 'Engine confidence 0..1.';
