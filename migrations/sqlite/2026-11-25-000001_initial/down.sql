DROP TABLE settings;
DROP TABLE audit_head;
DROP TABLE audit_events;
DROP TABLE invitations;
DROP TABLE credentials;
DROP TABLE users;
