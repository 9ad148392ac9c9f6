-- Release 1.1.0: a per-machine risk score, kept by Core, backfilled here from the open incidents
-- and unresolved detections that exist at upgrade time.
CREATE TABLE machine_risk_scores (
    machine_id              VARCHAR(255)    NOT NULL,
    score                   SMALLINT        NOT NULL,
    open_incidents          INTEGER         NOT NULL DEFAULT 0,
    unresolved_detections   INTEGER         NOT NULL DEFAULT 0,
    computed_at             TIMESTAMPTZ     NOT NULL DEFAULT now(),
    CONSTRAINT pk_machine_risk_scores PRIMARY KEY (machine_id),
    CONSTRAINT fk_machine_risk_scores_machine FOREIGN KEY (machine_id)
        REFERENCES machines (machine_id) ON DELETE CASCADE,
    CONSTRAINT ck_machine_risk_scores_score_range CHECK (score BETWEEN 0 AND 100),
    CONSTRAINT ck_machine_risk_scores_open_incidents_non_negative CHECK (open_incidents >= 0),
    CONSTRAINT ck_machine_risk_scores_unresolved_detections_non_negative CHECK (unresolved_detections >= 0)
);

CREATE INDEX ix_machine_risk_scores_score ON machine_risk_scores (score DESC);

-- Backfill: one row per machine. Insert-only: no existing row is rewritten.
INSERT INTO machine_risk_scores (machine_id, score, open_incidents, unresolved_detections)
SELECT m.machine_id,
       LEAST(100, 25 * COALESCE(i.n, 0) + 10 * COALESCE(d.n, 0)),
       COALESCE(i.n, 0),
       COALESCE(d.n, 0)
  FROM machines m
  LEFT JOIN (SELECT primary_machine_id AS machine_id, count(*) AS n
               FROM incidents
              WHERE status NOT IN ('resolved', 'false_positive')
              GROUP BY primary_machine_id) i ON i.machine_id = m.machine_id
  LEFT JOIN (SELECT machine_id, count(*) AS n
               FROM detections
              WHERE resolved_at IS NULL
              GROUP BY machine_id) d ON d.machine_id = m.machine_id;
