-- Release 1.1.0: a new response action, snapshotting a volume before remediation.
-- Added after the existing labels; no migration of this release uses it (PostgreSQL refuses to
-- use an enum value in the transaction that added it), Core 1.1.0 does.
ALTER TYPE response_action_type ADD VALUE 'snapshot_volume' AFTER 'collect_artifacts';
