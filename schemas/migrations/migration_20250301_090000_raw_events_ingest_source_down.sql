-- Back to 1.0.0: drop the column (catalog-only in PostgreSQL; every other column is untouched).
ALTER TABLE raw_events DROP COLUMN ingest_source;
