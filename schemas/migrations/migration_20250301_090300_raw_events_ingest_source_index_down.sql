-- Back to 1.0.0.
DROP INDEX ix_raw_events_ingest_source_received_at;
