-- Release 1.1.0: find the (rare) events that did not come from an agent.
-- Partial index: only non-agent rows are stored, so it stays small; building it reads raw_events
-- once under a SHARE lock (reads go on, writes wait) while Core is stopped for the upgrade.
-- ransomeye:lint-ok index-on-existing-table Core is stopped during the upgrade; see docs/PERFORMANCE.md for the measured build time
CREATE INDEX ix_raw_events_ingest_source_received_at
    ON raw_events (ingest_source, received_at DESC)
    WHERE ingest_source <> 'agent';
