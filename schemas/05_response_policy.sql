-- =============================================================================
-- RansomEye Core v1.0.0 schema bundle -- 05_response_policy.sql
-- Response policies, their assignment to machines, and response actions
-- (containment / remediation commands sent to agents) with their audit trail.
-- =============================================================================

CREATE TYPE policy_mode AS ENUM (
    'monitor',          -- detect and alert only
    'approval',         -- propose response actions, an analyst must approve
    'automatic'         -- execute response actions automatically
);

CREATE TYPE response_action_type AS ENUM (
    'isolate',
    'release_isolation',
    'kill_process',
    'suspend_process',
    'quarantine_file',
    'restore_file',
    'block_hash',
    'collect_artifacts'
);

CREATE TYPE response_action_status AS ENUM (
    'pending',          -- requested, awaiting approval / dispatch
    'approved',
    'dispatched',       -- sent to the agent
    'succeeded',
    'failed',
    'cancelled',
    'expired'           -- agent never picked it up in time
);

-- -----------------------------------------------------------------------------
-- policies: one row per policy; version increments on each change.
-- -----------------------------------------------------------------------------
CREATE TABLE policies (
    policy_id       UUID            NOT NULL DEFAULT gen_random_uuid(),
    name            VARCHAR(255)    NOT NULL,
    description     TEXT,
    version         INTEGER         NOT NULL DEFAULT 1,
    mode            policy_mode     NOT NULL DEFAULT 'monitor',
    rules           JSONB           NOT NULL DEFAULT '{}'::jsonb,
    enabled         BOOLEAN         NOT NULL DEFAULT true,
    created_by      VARCHAR(255)    NOT NULL,
    created_at      TIMESTAMPTZ     NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ     NOT NULL DEFAULT now(),
    CONSTRAINT pk_policies PRIMARY KEY (policy_id),
    CONSTRAINT uq_policies_name UNIQUE (name),
    CONSTRAINT ck_policies_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT ck_policies_version_positive CHECK (version > 0),
    CONSTRAINT ck_policies_rules_is_object CHECK (jsonb_typeof(rules) = 'object'),
    CONSTRAINT ck_policies_created_by_not_blank CHECK (btrim(created_by) <> ''),
    CONSTRAINT ck_policies_updated_after_created CHECK (updated_at >= created_at)
);

COMMENT ON TABLE policies IS 'Detection/response policies; rules is the policy document (JSON object).';

-- -----------------------------------------------------------------------------
-- policy_assignments: which policies apply to which machines. priority orders
-- overlapping policies on one machine (lower value wins).
-- -----------------------------------------------------------------------------
CREATE TABLE policy_assignments (
    policy_id       UUID            NOT NULL,
    machine_id      VARCHAR(255)    NOT NULL,
    priority        INTEGER         NOT NULL DEFAULT 100,
    assigned_by     VARCHAR(255)    NOT NULL,
    assigned_at     TIMESTAMPTZ     NOT NULL DEFAULT now(),
    CONSTRAINT pk_policy_assignments PRIMARY KEY (policy_id, machine_id),
    CONSTRAINT fk_policy_assignments_policy FOREIGN KEY (policy_id)
        REFERENCES policies (policy_id) ON DELETE CASCADE,
    CONSTRAINT fk_policy_assignments_machine FOREIGN KEY (machine_id)
        REFERENCES machines (machine_id) ON DELETE CASCADE,
    CONSTRAINT ck_policy_assignments_priority_non_negative CHECK (priority >= 0),
    CONSTRAINT ck_policy_assignments_assigned_by_not_blank CHECK (btrim(assigned_by) <> '')
);

COMMENT ON TABLE policy_assignments IS 'Assignment of policies to machines.';

-- -----------------------------------------------------------------------------
-- response_actions: audit trail of containment/remediation commands.
-- incident_id / detection_id say what prompted the action (either may be
-- NULL for ad-hoc analyst actions); policy_id is set for policy-driven actions.
-- RESTRICT on incident/detection/machine keeps the audit trail intact.
-- completed_at is set exactly when the status is terminal.
-- -----------------------------------------------------------------------------
CREATE TABLE response_actions (
    action_id       UUID                    NOT NULL DEFAULT gen_random_uuid(),
    incident_id     UUID,
    detection_id    UUID,
    machine_id      VARCHAR(255)            NOT NULL,
    policy_id       UUID,
    action_type     response_action_type    NOT NULL,
    status          response_action_status  NOT NULL DEFAULT 'pending',
    parameters      JSONB                   NOT NULL DEFAULT '{}'::jsonb,
    requested_by    VARCHAR(255)            NOT NULL,
    requested_at    TIMESTAMPTZ             NOT NULL DEFAULT now(),
    approved_by     VARCHAR(255),
    approved_at     TIMESTAMPTZ,
    dispatched_at   TIMESTAMPTZ,
    completed_at    TIMESTAMPTZ,
    result          JSONB,
    error_message   TEXT,
    CONSTRAINT pk_response_actions PRIMARY KEY (action_id),
    CONSTRAINT fk_response_actions_incident FOREIGN KEY (incident_id)
        REFERENCES incidents (incident_id) ON DELETE RESTRICT,
    CONSTRAINT fk_response_actions_detection FOREIGN KEY (detection_id)
        REFERENCES detections (detection_id) ON DELETE RESTRICT,
    CONSTRAINT fk_response_actions_machine FOREIGN KEY (machine_id)
        REFERENCES machines (machine_id) ON DELETE RESTRICT,
    CONSTRAINT fk_response_actions_policy FOREIGN KEY (policy_id)
        REFERENCES policies (policy_id) ON DELETE SET NULL,
    CONSTRAINT ck_response_actions_parameters_is_object
        CHECK (jsonb_typeof(parameters) = 'object'),
    CONSTRAINT ck_response_actions_result_is_object
        CHECK (result IS NULL OR jsonb_typeof(result) = 'object'),
    CONSTRAINT ck_response_actions_requested_by_not_blank
        CHECK (btrim(requested_by) <> ''),
    CONSTRAINT ck_response_actions_approval_pair
        CHECK ((approved_by IS NULL) = (approved_at IS NULL)),
    CONSTRAINT ck_response_actions_approved_after_requested
        CHECK (approved_at IS NULL OR approved_at >= requested_at),
    CONSTRAINT ck_response_actions_dispatched_after_requested
        CHECK (dispatched_at IS NULL OR dispatched_at >= requested_at),
    CONSTRAINT ck_response_actions_completed_after_requested
        CHECK (completed_at IS NULL OR completed_at >= requested_at),
    CONSTRAINT ck_response_actions_completed_consistency
        CHECK ((status IN ('succeeded', 'failed', 'cancelled', 'expired')) = (completed_at IS NOT NULL)),
    CONSTRAINT ck_response_actions_error_only_on_failure
        CHECK (error_message IS NULL OR status IN ('failed', 'expired'))
);

COMMENT ON TABLE response_actions IS 'Containment/remediation commands and their lifecycle (audit trail).';
