-- =============================================================================
-- RansomEye Core v1.0.0 schema bundle -- 02_normalized_activity.sql
-- Normalized endpoint activity parsed out of raw_events: process activity
-- (process_events) and file-system activity (file_events).
-- Each normalized row points at exactly one raw event; deleting a raw event
-- (retention purge) removes its normalized rows with it.
-- =============================================================================

CREATE TYPE process_action AS ENUM (
    'start',
    'exit',
    'inject',       -- code injection into another process
    'terminate'     -- process terminated another process
);

CREATE TYPE file_operation AS ENUM (
    'create',
    'read',
    'modify',
    'rename',
    'delete',
    'encrypt',              -- write pattern classified as in-place encryption
    'permission_change'
);

-- -----------------------------------------------------------------------------
-- process_events
-- -----------------------------------------------------------------------------
CREATE TABLE process_events (
    process_event_id    UUID            NOT NULL DEFAULT gen_random_uuid(),
    raw_event_id        UUID            NOT NULL,
    machine_id          VARCHAR(255)    NOT NULL,
    observed_at         TIMESTAMPTZ     NOT NULL,
    action              process_action  NOT NULL,
    pid                 INTEGER         NOT NULL,
    ppid                INTEGER,
    image_path          TEXT            NOT NULL,
    command_line        TEXT,
    parent_image_path   TEXT,
    user_name           VARCHAR(255),
    user_sid            VARCHAR(255),
    integrity_level     VARCHAR(32),
    sha256              CHAR(64),
    sha1                CHAR(40),
    md5                 CHAR(32),
    is_signed           BOOLEAN,
    signer              VARCHAR(512),
    exit_code           INTEGER,
    CONSTRAINT pk_process_events PRIMARY KEY (process_event_id),
    CONSTRAINT uq_process_events_raw_event UNIQUE (raw_event_id),
    CONSTRAINT fk_process_events_raw_event FOREIGN KEY (raw_event_id)
        REFERENCES raw_events (event_id) ON DELETE CASCADE,
    CONSTRAINT fk_process_events_machine FOREIGN KEY (machine_id)
        REFERENCES machines (machine_id) ON DELETE RESTRICT,
    CONSTRAINT ck_process_events_pid_non_negative CHECK (pid >= 0),
    CONSTRAINT ck_process_events_ppid_non_negative CHECK (ppid IS NULL OR ppid >= 0),
    CONSTRAINT ck_process_events_image_path_not_blank CHECK (btrim(image_path) <> ''),
    CONSTRAINT ck_process_events_sha256_hex CHECK (sha256 IS NULL OR sha256 ~ '^[0-9a-f]{64}$'),
    CONSTRAINT ck_process_events_sha1_hex CHECK (sha1 IS NULL OR sha1 ~ '^[0-9a-f]{40}$'),
    CONSTRAINT ck_process_events_md5_hex CHECK (md5 IS NULL OR md5 ~ '^[0-9a-f]{32}$'),
    CONSTRAINT ck_process_events_exit_code_only_on_exit
        CHECK (exit_code IS NULL OR action = 'exit')
);

COMMENT ON TABLE process_events IS 'Normalized process activity, one row per raw process event.';

-- -----------------------------------------------------------------------------
-- file_events
-- -----------------------------------------------------------------------------
CREATE TABLE file_events (
    file_event_id       UUID            NOT NULL DEFAULT gen_random_uuid(),
    raw_event_id        UUID            NOT NULL,
    machine_id          VARCHAR(255)    NOT NULL,
    process_event_id    UUID,
    observed_at         TIMESTAMPTZ     NOT NULL,
    operation           file_operation  NOT NULL,
    pid                 INTEGER,
    file_path           TEXT            NOT NULL,
    previous_path       TEXT,
    file_extension      VARCHAR(64),
    entropy             NUMERIC(6,4),
    bytes_written       BIGINT,
    file_size_bytes     BIGINT,
    sha256_before       CHAR(64),
    sha256_after        CHAR(64),
    CONSTRAINT pk_file_events PRIMARY KEY (file_event_id),
    CONSTRAINT uq_file_events_raw_event UNIQUE (raw_event_id),
    CONSTRAINT fk_file_events_raw_event FOREIGN KEY (raw_event_id)
        REFERENCES raw_events (event_id) ON DELETE CASCADE,
    CONSTRAINT fk_file_events_machine FOREIGN KEY (machine_id)
        REFERENCES machines (machine_id) ON DELETE RESTRICT,
    CONSTRAINT fk_file_events_process_event FOREIGN KEY (process_event_id)
        REFERENCES process_events (process_event_id) ON DELETE SET NULL,
    CONSTRAINT ck_file_events_pid_non_negative CHECK (pid IS NULL OR pid >= 0),
    CONSTRAINT ck_file_events_path_not_blank CHECK (btrim(file_path) <> ''),
    CONSTRAINT ck_file_events_rename_has_previous_path
        CHECK (operation <> 'rename' OR previous_path IS NOT NULL),
    CONSTRAINT ck_file_events_entropy_range
        CHECK (entropy IS NULL OR (entropy >= 0 AND entropy <= 8)),
    CONSTRAINT ck_file_events_bytes_written_non_negative
        CHECK (bytes_written IS NULL OR bytes_written >= 0),
    CONSTRAINT ck_file_events_file_size_non_negative
        CHECK (file_size_bytes IS NULL OR file_size_bytes >= 0),
    CONSTRAINT ck_file_events_sha256_before_hex
        CHECK (sha256_before IS NULL OR sha256_before ~ '^[0-9a-f]{64}$'),
    CONSTRAINT ck_file_events_sha256_after_hex
        CHECK (sha256_after IS NULL OR sha256_after ~ '^[0-9a-f]{64}$')
);

COMMENT ON TABLE file_events IS 'Normalized file-system activity, one row per raw file event.';
COMMENT ON COLUMN file_events.entropy IS 'Shannon entropy of written content in bits per byte (0..8); ~8 suggests encryption/compression.';
