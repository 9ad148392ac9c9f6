-- =============================================================================
-- RansomEye Core v1.0.0 schema bundle -- 00_core_identity.sql
-- Core identity: monitored machines (endpoints) and the agents installed on
-- them, plus the enum types those two tables use.
-- Applied in order 00..06 on an empty database (schema public).
-- =============================================================================

CREATE TYPE os_family AS ENUM (
    'windows',
    'linux',
    'macos',
    'other'
);

CREATE TYPE machine_status AS ENUM (
    'active',          -- enrolled, reporting
    'inactive',        -- enrolled, no recent contact
    'isolated',        -- network-isolated by a response action
    'decommissioned'   -- retired; kept for evidence, never reporting again
);

CREATE TYPE agent_status AS ENUM (
    'registered',      -- enrolled, never seen a heartbeat yet
    'online',
    'offline',
    'degraded',        -- heartbeating but reporting a health problem
    'revoked'          -- credentials revoked / uninstalled
);

-- -----------------------------------------------------------------------------
-- machines: one row per endpoint. machine_id is the stable identifier the
-- agent reports (e.g. hardware/OS-derived id), not a surrogate key.
-- Machines are never hard-deleted while evidence references them (evidence
-- tables use ON DELETE RESTRICT); retire them with status 'decommissioned'.
-- -----------------------------------------------------------------------------
CREATE TABLE machines (
    machine_id      VARCHAR(255)    NOT NULL,
    hostname        VARCHAR(255)    NOT NULL,
    fqdn            VARCHAR(255),
    os_family       os_family       NOT NULL,
    os_version      VARCHAR(128)    NOT NULL,
    ip_address      INET,
    first_seen      TIMESTAMPTZ     NOT NULL DEFAULT now(),
    last_seen       TIMESTAMPTZ     NOT NULL DEFAULT now(),
    status          machine_status  NOT NULL DEFAULT 'active',
    created_at      TIMESTAMPTZ     NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ     NOT NULL DEFAULT now(),
    CONSTRAINT pk_machines PRIMARY KEY (machine_id),
    CONSTRAINT ck_machines_machine_id_not_blank CHECK (btrim(machine_id) <> ''),
    CONSTRAINT ck_machines_hostname_not_blank CHECK (btrim(hostname) <> ''),
    CONSTRAINT ck_machines_os_version_not_blank CHECK (btrim(os_version) <> ''),
    CONSTRAINT ck_machines_seen_order CHECK (last_seen >= first_seen),
    CONSTRAINT ck_machines_updated_after_created CHECK (updated_at >= created_at)
);

COMMENT ON TABLE machines IS 'Monitored endpoints; machine_id is the agent-reported stable id.';

-- -----------------------------------------------------------------------------
-- agents: the RansomEye agent installation(s) on a machine. A machine keeps
-- its agent history (reinstalls); at most one non-revoked agent per machine
-- is enforced by a partial unique index in 06_indexes.sql.
-- -----------------------------------------------------------------------------
CREATE TABLE agents (
    agent_id            UUID            NOT NULL DEFAULT gen_random_uuid(),
    machine_id          VARCHAR(255)    NOT NULL,
    agent_version       VARCHAR(64)     NOT NULL,
    status              agent_status    NOT NULL DEFAULT 'registered',
    enrolled_at         TIMESTAMPTZ     NOT NULL DEFAULT now(),
    last_heartbeat_at   TIMESTAMPTZ,
    revoked_at          TIMESTAMPTZ,
    created_at          TIMESTAMPTZ     NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ     NOT NULL DEFAULT now(),
    CONSTRAINT pk_agents PRIMARY KEY (agent_id),
    CONSTRAINT fk_agents_machine FOREIGN KEY (machine_id)
        REFERENCES machines (machine_id) ON DELETE CASCADE,
    CONSTRAINT ck_agents_version_not_blank CHECK (btrim(agent_version) <> ''),
    CONSTRAINT ck_agents_heartbeat_after_enroll
        CHECK (last_heartbeat_at IS NULL OR last_heartbeat_at >= enrolled_at),
    CONSTRAINT ck_agents_revoked_consistency
        CHECK ((status = 'revoked') = (revoked_at IS NOT NULL)),
    CONSTRAINT ck_agents_revoked_after_enroll
        CHECK (revoked_at IS NULL OR revoked_at >= enrolled_at),
    CONSTRAINT ck_agents_updated_after_created CHECK (updated_at >= created_at)
);

COMMENT ON TABLE agents IS 'Agent installations per machine (history kept; one non-revoked agent per machine).';
