DROP TABLE recovery_requests;
