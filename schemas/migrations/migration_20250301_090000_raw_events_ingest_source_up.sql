-- Release 1.1.0: where an event came from. Events before 1.1.0 all came from agents.
-- A constant default is stored in the catalog (PostgreSQL 11+): no table rewrite, no scan.
ALTER TABLE raw_events
    ADD COLUMN ingest_source VARCHAR(32) NOT NULL DEFAULT 'agent';
