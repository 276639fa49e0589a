ALTER TABLE oidc_grants
    ADD CONSTRAINT oidc_grants_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id),
    ADD CONSTRAINT oidc_grants_client_id_fkey FOREIGN KEY (client_id) REFERENCES oidc_clients (client_id);
