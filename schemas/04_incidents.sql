-- =============================================================================
-- RansomEye Core v1.0.0 schema bundle -- 04_incidents.sql
-- Incidents (analyst-facing cases grouping detections), the incident <->
-- detection link table, and the incident notes timeline.
-- =============================================================================

CREATE TYPE incident_status AS ENUM (
    'open',
    'investigating',
    'contained',
    'resolved',
    'false_positive'
);

-- -----------------------------------------------------------------------------
-- incidents. primary_machine_id is the first/main affected endpoint; the full
-- set of machines follows from the linked detections. closed_at is set
-- exactly when the status is terminal ('resolved', 'false_positive').
-- -----------------------------------------------------------------------------
CREATE TABLE incidents (
    incident_id         UUID                NOT NULL DEFAULT gen_random_uuid(),
    title               VARCHAR(512)        NOT NULL,
    description         TEXT,
    severity            severity_level      NOT NULL,
    status              incident_status     NOT NULL DEFAULT 'open',
    primary_machine_id  VARCHAR(255),
    assigned_to         VARCHAR(255),
    opened_at           TIMESTAMPTZ         NOT NULL DEFAULT now(),
    contained_at        TIMESTAMPTZ,
    closed_at           TIMESTAMPTZ,
    created_at          TIMESTAMPTZ         NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ         NOT NULL DEFAULT now(),
    CONSTRAINT pk_incidents PRIMARY KEY (incident_id),
    CONSTRAINT fk_incidents_primary_machine FOREIGN KEY (primary_machine_id)
        REFERENCES machines (machine_id) ON DELETE RESTRICT,
    CONSTRAINT ck_incidents_title_not_blank CHECK (btrim(title) <> ''),
    CONSTRAINT ck_incidents_closed_after_opened
        CHECK (closed_at IS NULL OR closed_at >= opened_at),
    CONSTRAINT ck_incidents_contained_after_opened
        CHECK (contained_at IS NULL OR contained_at >= opened_at),
    CONSTRAINT ck_incidents_closed_consistency
        CHECK ((status IN ('resolved', 'false_positive')) = (closed_at IS NOT NULL)),
    CONSTRAINT ck_incidents_updated_after_created CHECK (updated_at >= created_at)
);

COMMENT ON TABLE incidents IS 'Analyst-facing cases grouping related detections.';

-- -----------------------------------------------------------------------------
-- incident_detections: many-to-many link. Deleting either side removes the link.
-- -----------------------------------------------------------------------------
CREATE TABLE incident_detections (
    incident_id     UUID            NOT NULL,
    detection_id    UUID            NOT NULL,
    linked_at       TIMESTAMPTZ     NOT NULL DEFAULT now(),
    linked_by       VARCHAR(255)    NOT NULL DEFAULT 'system',
    CONSTRAINT pk_incident_detections PRIMARY KEY (incident_id, detection_id),
    CONSTRAINT fk_incident_detections_incident FOREIGN KEY (incident_id)
        REFERENCES incidents (incident_id) ON DELETE CASCADE,
    CONSTRAINT fk_incident_detections_detection FOREIGN KEY (detection_id)
        REFERENCES detections (detection_id) ON DELETE CASCADE,
    CONSTRAINT ck_incident_detections_linked_by_not_blank CHECK (btrim(linked_by) <> '')
);

COMMENT ON TABLE incident_detections IS 'Links detections to incidents (many-to-many).';

-- -----------------------------------------------------------------------------
-- incident_notes: analyst / system timeline entries on an incident.
-- -----------------------------------------------------------------------------
CREATE TABLE incident_notes (
    note_id         UUID            NOT NULL DEFAULT gen_random_uuid(),
    incident_id     UUID            NOT NULL,
    author          VARCHAR(255)    NOT NULL,
    body            TEXT            NOT NULL,
    created_at      TIMESTAMPTZ     NOT NULL DEFAULT now(),
    CONSTRAINT pk_incident_notes PRIMARY KEY (note_id),
    CONSTRAINT fk_incident_notes_incident FOREIGN KEY (incident_id)
        REFERENCES incidents (incident_id) ON DELETE CASCADE,
    CONSTRAINT ck_incident_notes_author_not_blank CHECK (btrim(author) <> ''),
    CONSTRAINT ck_incident_notes_body_not_blank CHECK (btrim(body) <> '')
);

COMMENT ON TABLE incident_notes IS 'Timeline notes attached to an incident.';
