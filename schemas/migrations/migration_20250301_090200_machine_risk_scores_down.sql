-- Back to 1.0.0: the scores are derived data; nothing from 1.0.0 lives in this table.
DROP TABLE machine_risk_scores;
