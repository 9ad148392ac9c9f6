-- Back to 1.0.0: PostgreSQL cannot drop an enum label, so the type is rebuilt with the 1.0.0
-- labels in their 1.0.0 order. Rows that use the 1.1.0 label cannot be represented in 1.0.0:
-- refuse rather than change or delete them.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM response_actions WHERE action_type::text = 'snapshot_volume') THEN
        RAISE EXCEPTION 'response_actions has rows with action_type snapshot_volume, which release 1.0.0 cannot store'
            USING ERRCODE = 'restrict_violation',
                  HINT = 'Cancel or archive those actions, then run the rollback again.';
    END IF;
END
$$;

ALTER TYPE response_action_type RENAME TO response_action_type_v1_1_0;

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

-- ransomeye:lint-ok alter-column-type the rollback runs while Core is stopped; response_actions is small
ALTER TABLE response_actions
    ALTER COLUMN action_type TYPE response_action_type USING action_type::text::response_action_type;

DROP TYPE response_action_type_v1_1_0;
