//! Diesel table definitions, written by hand to match `migrations/{sqlite,postgres}`.

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        display_name -> Text,
        role -> Text,
        status -> Text,
        created_at -> BigInt,
        admin_since -> Nullable<BigInt>,
        admin_granted_by -> Nullable<Text>,
        admin_approved_by -> Nullable<Text>,
    }
}

diesel::table! {
    credentials (id) {
        id -> Text,
        user_id -> Text,
        credential_id -> Binary,
        public_key_cose -> Binary,
        alg -> BigInt,
        sign_count -> BigInt,
        aaguid -> Text,
        model -> Nullable<Text>,
        fips -> Bool,
        firmware -> Nullable<Text>,
        fmt -> Text,
        attestation_kind -> Text,
        trust_anchor -> Nullable<Text>,
        trust_anchor_sha256 -> Nullable<Text>,
        leaf_sha256 -> Nullable<Text>,
        chain_json -> Text,
        attestation_object -> Binary,
        client_data_json -> Binary,
        user_verified -> Bool,
        backup_eligible -> Bool,
        phishing_resistant -> Bool,
        policy_version -> BigInt,
        decision_json -> Text,
        nickname -> Text,
        enrolled_at -> BigInt,
        enrolled_by -> Text,
        revoked_at -> Nullable<BigInt>,
        revoked_by -> Nullable<Text>,
        last_used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    invitations (id) {
        id -> Text,
        token_hash -> Text,
        kind -> Text,
        email -> Text,
        display_name -> Text,
        role -> Text,
        created_by -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        used_by -> Nullable<Text>,
        revoked_at -> Nullable<BigInt>,
        approved_by -> Nullable<Text>,
        approved_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_events (seq) {
        seq -> BigInt,
        id -> Text,
        at -> BigInt,
        actor -> Text,
        action -> Text,
        subject -> Text,
        outcome -> Text,
        reason -> Nullable<Text>,
        details -> Text,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    audit_head (id) {
        id -> Integer,
        seq -> BigInt,
        hash -> Text,
    }
}

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
        updated_at -> BigInt,
    }
}

diesel::joinable!(credentials -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(users, credentials);

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        token_hash -> Text,
        key_id -> Nullable<Text>,
        user_verified -> Bool,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
        ended_at -> Nullable<BigInt>,
        ended_by -> Nullable<Text>,
    }
}

diesel::table! {
    workspaces (id) {
        id -> Text,
        name -> Text,
        external_id -> Text,
        source -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    workspace_members (workspace_id, user_id) {
        workspace_id -> Text,
        user_id -> Text,
        added_at -> BigInt,
        added_by -> Text,
    }
}

diesel::joinable!(workspace_members -> workspaces (workspace_id));
diesel::allow_tables_to_appear_in_same_query!(workspaces, workspace_members);

diesel::table! {
    oidc_clients (client_id) {
        client_id -> Text,
        name -> Text,
        secret_sha256 -> Nullable<Text>,
        redirect_uris -> Text,
        post_logout_redirect_uris -> Text,
        allowed_scopes -> Text,
        id_token_alg -> Text,
        workspace_id -> Nullable<Text>,
        required_acr -> Text,
        source -> Text,
        created_at -> BigInt,
        disabled_at -> Nullable<BigInt>,
        jwks -> Nullable<Text>,
    }
}

diesel::table! {
    oidc_grants (id) {
        id -> Text,
        user_id -> Text,
        client_id -> Text,
        session_id -> Nullable<Text>,
        key_id -> Nullable<Text>,
        auth_time -> BigInt,
        acr -> Text,
        amr -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    oidc_refresh_tokens (digest) {
        digest -> Text,
        grant_id -> Text,
        client_id -> Text,
        user_id -> Text,
        scope -> Text,
        record -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    recovery_requests (id) {
        id -> Text,
        user_id -> Text,
        requested_by -> Text,
        reason -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        approved_by -> Nullable<Text>,
        approved_at -> Nullable<BigInt>,
        invitation_id -> Nullable<Text>,
        completed_at -> Nullable<BigInt>,
        status -> Text,
    }
}

diesel::table! {
    saml_service_providers (entity_id) {
        entity_id -> Text,
        name -> Text,
        settings -> Text,
        workspace_id -> Nullable<Text>,
        source -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        disabled_at -> Nullable<BigInt>,
    }
}
